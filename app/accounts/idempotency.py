"""`Idempotency-Key`: the same key and body give back the same resource; the same key with
another body is refused (422, as the IETF Idempotency-Key draft says). Records live at least
24 hours."""

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, insert, select, tuple_
from sqlalchemy.orm import Session

from app.accounts.models import IdempotencyRecord
from app.core.db import utcnow

RETENTION = timedelta(hours=48)
_RECORDS = IdempotencyRecord.metadata.tables[IdempotencyRecord.__tablename__]


@dataclass(frozen=True, slots=True)
class Fingerprinted:
    """What a request with an Idempotency-Key made; `new` until it is remembered."""

    owner: str
    key: str
    fingerprint: str
    resource_type: str
    resource_id: str
    new: bool = False


def request_fingerprint(route: str, body: Any) -> str:
    canonical = json.dumps({"route": route, "body": body}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def earlier_requests(
    session: Session, keys: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], Fingerprinted]:
    """What earlier requests with these (owner, key) pairs made, within the retention."""
    if not keys:
        return {}
    records = session.scalars(
        select(IdempotencyRecord).where(
            tuple_(IdempotencyRecord.owner, IdempotencyRecord.key).in_(set(keys)),
            IdempotencyRecord.created_at > utcnow() - RETENTION,
        )
    )
    return {
        (record.owner, record.key): Fingerprinted(
            owner=record.owner,
            key=record.key,
            fingerprint=record.request_hash,
            resource_type=record.resource_type,
            resource_id=record.resource_id,
        )
        for record in records
    }


def remember_all(session: Session, made: Sequence[Fingerprinted]) -> None:
    """Record what these requests made. Two processes remembering one key at once: the unique
    constraint fails one transaction, whose request then finds the other's record."""
    if not made:
        return
    now = utcnow()
    # An expired record with the same key would collide with the unique constraint (a live
    # one stays: it is another process's, and the collision is what must happen then).
    session.execute(
        delete(IdempotencyRecord).where(
            tuple_(IdempotencyRecord.owner, IdempotencyRecord.key).in_(
                [(record.owner, record.key) for record in made]
            ),
            IdempotencyRecord.created_at <= now - RETENTION,
        )
    )
    session.execute(
        insert(_RECORDS),
        [
            {
                "owner": record.owner,
                "key": record.key,
                "request_hash": record.fingerprint,
                "resource_type": record.resource_type,
                "resource_id": record.resource_id,
                "created_at": now,
            }
            for record in made
        ],
    )


def prune(session: Session) -> int:
    result = session.execute(
        delete(IdempotencyRecord).where(IdempotencyRecord.created_at < utcnow() - RETENTION)
    )
    return int(getattr(result, "rowcount", 0) or 0)
