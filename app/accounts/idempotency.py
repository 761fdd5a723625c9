"""`Idempotency-Key`: the same key and body give back the same resource; the same key with
another body is refused (422, as the IETF Idempotency-Key draft says). Records live at least
24 hours."""

import hashlib
import json
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.accounts.models import IdempotencyRecord
from app.core.db import utcnow

RETENTION = timedelta(hours=48)


class IdempotencyConflict(Exception):
    """The key was already used for a different request."""


def request_fingerprint(route: str, body: Any) -> str:
    canonical = json.dumps({"route": route, "body": body}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def replayed_resource(session: Session, *, owner: str, key: str, fingerprint: str) -> str | None:
    """The resource id an earlier identical request created, or None for a fresh key."""
    record = session.scalar(
        select(IdempotencyRecord).where(
            IdempotencyRecord.owner == owner,
            IdempotencyRecord.key == key,
            IdempotencyRecord.created_at > utcnow() - RETENTION,
        )
    )
    if record is None:
        return None
    if record.request_hash != fingerprint:
        raise IdempotencyConflict("this Idempotency-Key was used with a different request")
    return record.resource_id


def remember(
    session: Session,
    *,
    owner: str,
    key: str,
    fingerprint: str,
    resource_type: str,
    resource_id: str,
) -> None:
    # An expired record with the same key would collide with the unique constraint.
    session.execute(
        delete(IdempotencyRecord).where(
            IdempotencyRecord.owner == owner, IdempotencyRecord.key == key
        )
    )
    session.add(
        IdempotencyRecord(
            owner=owner,
            key=key,
            request_hash=fingerprint,
            resource_type=resource_type,
            resource_id=resource_id,
            created_at=utcnow(),
        )
    )
    session.flush()


def prune(session: Session) -> int:
    result = session.execute(
        delete(IdempotencyRecord).where(IdempotencyRecord.created_at < utcnow() - RETENTION)
    )
    return int(getattr(result, "rowcount", 0) or 0)
