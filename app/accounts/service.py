"""Creating, listing, revoking and checking API keys. Only a key's SHA-256 is stored."""

import hashlib
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.accounts.models import ApiKey
from app.core.db import utcnow
from app.notify.signing import new_secret

KEY_PREFIX = "prk_"


def hash_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def create_key(session: Session, *, name: str, is_admin: bool = False) -> tuple[ApiKey, str]:
    """A new key; the plaintext is returned once and never stored."""
    plaintext = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(
        id=f"key_{secrets.token_hex(8)}",
        name=name,
        prefix=plaintext[: len(KEY_PREFIX) + 6],
        key_hash=hash_key(plaintext),
        is_admin=is_admin,
        webhook_secret=new_secret(),
        created_at=utcnow(),
    )
    session.add(key)
    session.flush()
    return key, plaintext


def list_keys(session: Session) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).order_by(ApiKey.created_at)))


def revoke_key(session: Session, key_id: str) -> ApiKey | None:
    key = session.get(ApiKey, key_id)
    if key is not None and key.revoked_at is None:
        key.revoked_at = utcnow()
    return key


def authenticate(session: Session, plaintext: str) -> ApiKey | None:
    """The live key matching `plaintext`, or None (unknown or revoked)."""
    key = session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(plaintext)))
    if key is None or key.revoked_at is not None:
        return None
    return key


def live_key_ids(session: Session, key_ids: set[str | None]) -> set[str]:
    """Those of `key_ids` that belong to existing, unrevoked keys."""
    wanted = {key_id for key_id in key_ids if key_id is not None}
    if not wanted:
        return set()
    query = select(ApiKey.id).where(ApiKey.id.in_(wanted), ApiKey.revoked_at.is_(None))
    return set(session.scalars(query))
