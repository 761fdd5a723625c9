"""Creating, listing and revoking API keys, and which are live. Only a key's SHA-256 is
stored."""

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from app.accounts.models import ApiKey
from app.accounts.scopes import Scope, stored_scopes
from app.core.db import utcnow
from app.notify.signing import new_secret
from app.scheduler.fair import Priority

KEY_PREFIX = "prk_"
_DURATION = re.compile(r"([0-9]{1,6})([smhd])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_KEY_LIFETIME = timedelta(days=3650)


def hash_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


@dataclass(frozen=True)
class KeyOptions:
    """What a new key may do, from where, until when, and its own limits (None: defaults)."""

    is_admin: bool = False
    scopes: frozenset[Scope] | None = None  # None: every scope but admin (and admin with is_admin)
    origins: frozenset[str] = frozenset()  # set: a publishable key, for these web origins only
    expires_at: datetime | None = None
    max_priority: Priority | None = None
    weight: float | None = None
    requests_per_minute: int | None = None
    creates_per_minute: int | None = None
    daily_budget_usd: float | None = None
    monthly_budget_usd: float | None = None
    webhook_url: str | None = None


def create_key(
    session: Session, *, name: str, is_admin: bool = False, options: KeyOptions | None = None
) -> tuple[ApiKey, str]:
    """A new key; the plaintext is returned once and never stored."""
    options = options or KeyOptions(is_admin=is_admin)
    scopes = options.scopes
    if scopes is not None and options.is_admin:
        scopes |= {Scope.ADMIN}
    plaintext = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(
        id=f"key_{secrets.token_hex(8)}",
        name=name,
        prefix=plaintext[: len(KEY_PREFIX) + 6],
        key_hash=hash_key(plaintext),
        is_admin=options.is_admin or (scopes is not None and Scope.ADMIN in scopes),
        webhook_secret=new_secret(),
        created_at=utcnow(),
        scopes=None if scopes is None else stored_scopes(scopes),
        origins=" ".join(sorted(options.origins)) or None,
        expires_at=options.expires_at,
        max_priority=options.max_priority.value if options.max_priority else None,
        weight=options.weight,
        requests_per_minute=options.requests_per_minute,
        creates_per_minute=options.creates_per_minute,
        daily_budget_usd=options.daily_budget_usd,
        monthly_budget_usd=options.monthly_budget_usd,
        webhook_url=options.webhook_url,
    )
    session.add(key)
    session.flush()
    return key, plaintext


def parse_duration(text: str) -> timedelta:
    """`30d`, `12h`, `90m` or `3600s`; ValueError for anything else, or past ten years."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"not a duration: {text!r} (e.g. 30d, 12h, 90m)")
    duration = timedelta(seconds=int(match[1]) * _UNITS[match[2]])
    if not timedelta(0) < duration <= MAX_KEY_LIFETIME:
        raise ValueError(f"a key lives between 1 s and 3650 days, not {text!r}")
    return duration


def list_keys(session: Session) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).order_by(ApiKey.created_at)))


def revoke_key(session: Session, key_id: str) -> ApiKey | None:
    key = session.get(ApiKey, key_id)
    if key is not None and key.revoked_at is None:
        key.revoked_at = utcnow()
    return key


def authenticate(session: Session, plaintext: str) -> ApiKey | None:
    """The live key matching `plaintext`, or None (unknown, revoked or expired)."""
    key = session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(plaintext)))
    if key is None or key.revoked_at is not None:
        return None
    if key.expires_at is not None and key.expires_at <= utcnow():
        return None
    return key


def live_key_ids(session: Session, key_ids: set[str | None]) -> set[str]:
    """Those of `key_ids` that belong to existing keys, neither revoked nor expired."""
    wanted = {key_id for key_id in key_ids if key_id is not None}
    if not wanted:
        return set()
    query = select(ApiKey.id).where(
        ApiKey.id.in_(wanted),
        ApiKey.revoked_at.is_(None),
        or_(ApiKey.expires_at.is_(None), ApiKey.expires_at > utcnow()),
    )
    return set(session.scalars(query))


def publishable_origins(session: Session) -> set[str]:
    """The web origins of every live publishable key (for CORS)."""
    rows = session.scalars(
        select(ApiKey.origins).where(
            ApiKey.origins.is_not(None),
            ApiKey.revoked_at.is_(None),
            or_(ApiKey.expires_at.is_(None), ApiKey.expires_at > utcnow()),
        )
    )
    return {origin for origins in rows if origins for origin in origins.split()}
