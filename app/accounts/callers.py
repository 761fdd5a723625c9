"""Who is calling: an API key's owner, or the anonymous caller of a development setup."""

from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.accounts.models import ApiKey
from app.accounts.service import hash_key
from app.core.batching import GroupRunner
from app.core.config import Environment, Settings
from app.core.db import Database
from app.scheduler.fair import Priority

ANONYMOUS = "anonymous"


@dataclass(frozen=True)
class Caller:
    """Every job belongs to one owner, and a caller sees only its own."""

    owner: str
    key_id: str | None
    is_admin: bool
    webhook_secret: str = field(repr=False)
    requests_per_minute: int
    max_concurrent_jobs: int  # 0: no cap
    max_priority: Priority = Priority.NORMAL  # the highest its jobs may ask for
    weight: float = 1.0  # its share of capacity against other owners' (`app.scheduler.fair`)

    @property
    def capped(self) -> bool:
        return self.max_concurrent_jobs > 0


def key_caller(key: ApiKey, settings: Settings) -> Caller:
    return Caller(
        owner=key.id,
        key_id=key.id,
        is_admin=key.is_admin,
        webhook_secret=key.webhook_secret,
        requests_per_minute=key.requests_per_minute or settings.requests_per_minute,
        max_concurrent_jobs=key.max_concurrent_jobs or settings.max_concurrent_jobs,
        max_priority=Priority(key.max_priority or settings.default_max_priority),
        weight=key.weight or 1.0,
    )


def internal_caller(settings: Settings, owner: str) -> Caller:
    """A caller inside Podrelay (the seed's tasks): no key, no cap, no admin rights."""
    return Caller(
        owner=owner,
        key_id=None,
        is_admin=False,
        webhook_secret=settings.webhook_signing_secret.get_secret_value(),
        requests_per_minute=settings.requests_per_minute,
        max_concurrent_jobs=0,
        max_priority=Priority.HIGH,
    )


def anonymous_caller(settings: Settings) -> Caller:
    return Caller(
        owner=ANONYMOUS,
        key_id=None,
        is_admin=settings.environment is Environment.DEVELOPMENT,
        webhook_secret=settings.webhook_signing_secret.get_secret_value(),
        requests_per_minute=settings.requests_per_minute,
        max_concurrent_jobs=settings.max_concurrent_jobs,
        max_priority=Priority(settings.default_max_priority),
    )


def callers_of_keys(
    session: Session, settings: Settings, key_hashes: list[str]
) -> list[Caller | None]:
    """The caller of each live API key, by its hash; None for an unknown or revoked one."""
    keys = session.scalars(select(ApiKey).where(ApiKey.key_hash.in_(set(key_hashes))))
    live = {key.key_hash: key_caller(key, settings) for key in keys if not key.revoked_at}
    return [live.get(key_hash) for key_hash in key_hashes]


class KeyLookup:
    """Per API process: concurrent requests' API keys are looked up with one query."""

    def __init__(self, settings: Settings, db: Database) -> None:
        self._settings = settings
        self._db = db
        self._groups: GroupRunner[str, Caller | None] = GroupRunner(self._look_up)

    async def caller(self, plaintext_key: str) -> Caller | None:
        """The caller of a live API key; None for an unknown or revoked one."""
        return await self._groups.run(hash_key(plaintext_key))

    async def _look_up(self, key_hashes: list[str]) -> list[Caller | None]:
        return await self._db.run(callers_of_keys, self._settings, key_hashes)
