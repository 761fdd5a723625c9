"""Who may touch a stored object: writers share a key's lock, its deleter holds it alone.

Storing and deleting meet on content-addressed keys: two jobs can make the same bytes, and
one may be deleted while the other's copy is being stored. A writer stores the object and
records its image while it holds the key's shared lock; a deleter checks that no image left
uses the key and deletes the object while it holds the key alone. So no image is ever
recorded as stored on an object that is being deleted. Locks end with the transaction.

PostgreSQL: transaction-level advisory locks on the key's hash. SQLite: the database's write
lock, which serialises every writer anyway.
"""

import hashlib

from sqlalchemy import text
from sqlalchemy.orm import Session

from app.jobs.service import lock_sqlite_writes


def _lock_id(key: str) -> int:
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big", signed=True)


def hold_media_key(session: Session, key: str, *, exclusive: bool = False) -> None:
    if session.get_bind().dialect.name != "postgresql":
        lock_sqlite_writes(session)
        return
    function = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
    session.execute(text(f"SELECT {function}(:id)"), {"id": _lock_id(key)})


def hold_media_keys(session: Session, keys: list[str]) -> None:
    """`hold_media_key` (shared) for many keys with one statement, in one order for all."""
    if not keys:
        return
    if session.get_bind().dialect.name != "postgresql":
        lock_sqlite_writes(session)
        return
    ids = sorted({_lock_id(key) for key in keys})
    session.execute(
        text("SELECT pg_advisory_xact_lock_shared(id) FROM unnest(CAST(:ids AS bigint[])) AS id"),
        {"ids": ids},
    )
