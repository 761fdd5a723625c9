"""Who is calling: an API key's owner, an end user with a session token, a host-app user with a
JWT, or the anonymous caller of a development setup; and what each may do."""

from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.orm import InstrumentedAttribute, Session

from app.accounts.models import ApiKey
from app.accounts.scopes import ALL_SCOPES, Scope, key_scopes, parse_origins
from app.accounts.tokens import HostClaims, Limits, SessionClaims
from app.core.config import Environment, Settings
from app.core.db import utcnow
from app.core.errors import PodrelayError, Unauthorized, invalid_api_key
from app.scheduler.fair import Priority

ANONYMOUS = "anonymous"
T = TypeVar("T")


class Credential(StrEnum):
    KEY = "key"
    SESSION = "session"
    JWT = "jwt"
    ANONYMOUS = "anonymous"
    INTERNAL = "internal"


@dataclass(frozen=True, kw_only=True)
class Caller:
    """Every job belongs to one owner, and a caller sees only its own."""

    owner: str
    key_id: str | None  # the key, or the key that minted its session token
    credential: Credential
    scopes: frozenset[Scope]
    webhook_secret: str = field(repr=False)
    requests_per_minute: int  # reads and other calls
    creates_per_minute: int
    max_concurrent_jobs: int  # 0: no cap
    max_priority: Priority = Priority.NORMAL  # the highest its jobs may ask for
    weight: float = 1.0  # its share of capacity against other owners' (`app.scheduler.fair`)
    origins: frozenset[str] = frozenset()  # set: accepted only from these web origins
    daily_budget_usd: float | None = None
    monthly_budget_usd: float | None = None
    webhook_url: str | None = None  # where its account events (`budget.threshold`) go

    @property
    def capped(self) -> bool:
        return self.max_concurrent_jobs > 0

    @property
    def is_admin(self) -> bool:
        return Scope.ADMIN in self.scopes

    @property
    def budgeted(self) -> bool:
        return self.daily_budget_usd is not None or self.monthly_budget_usd is not None


def key_caller(key: ApiKey, settings: Settings) -> Caller:
    return Caller(
        owner=key.id,
        key_id=key.id,
        credential=Credential.KEY,
        scopes=key_scopes(key.scopes, is_admin=key.is_admin),
        webhook_secret=key.webhook_secret,
        requests_per_minute=key.requests_per_minute or settings.requests_per_minute,
        creates_per_minute=key.creates_per_minute or settings.creates_per_minute,
        max_concurrent_jobs=key.max_concurrent_jobs or settings.max_concurrent_jobs,
        max_priority=Priority(key.max_priority or settings.default_max_priority),
        weight=key.weight or 1.0,
        origins=parse_origins((key.origins or "").split()),
        daily_budget_usd=_first(key.daily_budget_usd, settings.budget_daily_usd),
        monthly_budget_usd=_first(key.monthly_budget_usd, settings.budget_monthly_usd),
        webhook_url=key.webhook_url or settings.budget_webhook_url,
    )


def session_caller(key: Caller, claims: SessionClaims, settings: Settings) -> Caller:
    """An end user of the key's app: the key's rights narrowed by the token; the budgets are
    the user's own (the token's, else the settings' defaults)."""
    return _limited(
        replace(
            key,
            owner=claims.owner,
            credential=Credential.SESSION,
            scopes=claims.scopes & key.scopes,
            origins=claims.origins,
        ),
        claims.limits,
        budgets=(settings.budget_daily_usd, settings.budget_monthly_usd),
    )


def jwt_caller(claims: HostClaims, settings: Settings) -> Caller:
    """A user of the host app; its webhooks are signed with WEBHOOK_SIGNING_SECRET."""
    defaults = anonymous_caller(settings)
    return _limited(
        replace(defaults, owner=claims.owner, credential=Credential.JWT, scopes=claims.scopes),
        claims.limits,
        budgets=(settings.budget_daily_usd, settings.budget_monthly_usd),
    )


def _limited(caller: Caller, limits: Limits, *, budgets: tuple[float | None, ...]) -> Caller:
    return replace(
        caller,
        max_priority=limits.max_priority or caller.max_priority,
        requests_per_minute=limits.requests_per_minute or caller.requests_per_minute,
        creates_per_minute=limits.creates_per_minute or caller.creates_per_minute,
        max_concurrent_jobs=_first(limits.max_concurrent_jobs, caller.max_concurrent_jobs),
        daily_budget_usd=_first(limits.daily_budget_usd, budgets[0]),
        monthly_budget_usd=_first(limits.monthly_budget_usd, budgets[1]),
    )


def internal_caller(settings: Settings, owner: str) -> Caller:
    """A caller inside Podrelay (the seed's tasks): no key, no cap, no admin rights."""
    return Caller(
        owner=owner,
        key_id=None,
        credential=Credential.INTERNAL,
        scopes=ALL_SCOPES - {Scope.ADMIN},
        webhook_secret=settings.webhook_signing_secret.get_secret_value(),
        requests_per_minute=settings.requests_per_minute,
        creates_per_minute=settings.creates_per_minute,
        max_concurrent_jobs=0,
        max_priority=Priority.HIGH,
    )


def anonymous_caller(settings: Settings) -> Caller:
    """Without a credential (development): admin there too, unless in another environment."""
    development = settings.environment is Environment.DEVELOPMENT
    return Caller(
        owner=ANONYMOUS,
        key_id=None,
        credential=Credential.ANONYMOUS,
        scopes=ALL_SCOPES if development else ALL_SCOPES - {Scope.ADMIN},
        webhook_secret=settings.webhook_signing_secret.get_secret_value(),
        requests_per_minute=settings.requests_per_minute,
        creates_per_minute=settings.creates_per_minute,
        max_concurrent_jobs=settings.max_concurrent_jobs,
        max_priority=Priority(settings.default_max_priority),
        daily_budget_usd=settings.budget_daily_usd,
        monthly_budget_usd=settings.budget_monthly_usd,
        webhook_url=settings.budget_webhook_url,
    )


def _first(value: T | None, fallback: T) -> T:
    return fallback if value is None else value


def key_refusal(key: ApiKey | None, now: datetime) -> PodrelayError | None:
    """Why a key may not be used now (unknown, revoked, expired), or None."""
    if key is None or key.revoked_at is not None:
        return invalid_api_key()
    if key.expires_at is not None and key.expires_at <= now:
        return Unauthorized("the API key has expired", code="api_key_expired")
    return None


def callers_by_hash(
    session: Session, settings: Settings, hashes: list[str]
) -> list[Caller | PodrelayError]:
    """The caller of each live key by its hash, or why it is refused."""
    return _callers(session, settings, ApiKey.key_hash, hashes)


def callers_by_id(
    session: Session, settings: Settings, ids: list[str]
) -> list[Caller | PodrelayError]:
    return _callers(session, settings, ApiKey.id, ids)


def _callers(
    session: Session, settings: Settings, column: InstrumentedAttribute[str], wanted: list[str]
) -> list[Caller | PodrelayError]:
    keys = session.scalars(select(ApiKey).where(column.in_(set(wanted))))
    found = {getattr(key, column.key): key for key in keys}
    now = utcnow()
    outcomes: list[Caller | PodrelayError] = []
    for value in wanted:
        key = found.get(value)
        refusal = key_refusal(key, now)
        if refusal is not None or key is None:
            outcomes.append(refusal or invalid_api_key())
        else:
            outcomes.append(key_caller(key, settings))
    return outcomes
