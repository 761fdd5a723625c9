"""Who is calling: an API key's owner, or the anonymous caller of a development setup."""

from dataclasses import dataclass, field

from app.accounts.models import ApiKey
from app.core.config import Environment, Settings

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
    )


def anonymous_caller(settings: Settings) -> Caller:
    return Caller(
        owner=ANONYMOUS,
        key_id=None,
        is_admin=settings.environment is Environment.DEVELOPMENT,
        webhook_secret=settings.webhook_signing_secret.get_secret_value(),
        requests_per_minute=settings.requests_per_minute,
        max_concurrent_jobs=settings.max_concurrent_jobs,
    )
