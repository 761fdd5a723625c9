"""Apply Alembic migrations on start, once even when several processes start together."""

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, text

from app.core.db import Database

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
# Arbitrary constant shared by every Podrelay process migrating the same PostgreSQL database.
_PG_LOCK_ID = 0x706F6472


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def upgrade_database(database: Database) -> None:
    """Bring the schema to the newest revision."""
    with _migration_lock(database), database.engine.connect() as connection:
        command.upgrade(alembic_config(connection), "head")
        connection.commit()


@contextmanager
def _migration_lock(database: Database) -> Iterator[None]:
    if database.engine.dialect.name == "postgresql":
        with database.engine.connect() as lock:
            lock.execute(text("SELECT pg_advisory_lock(:id)"), {"id": _PG_LOCK_ID})
            try:
                yield
            finally:
                lock.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": _PG_LOCK_ID})
        return
    path = Path(database.engine.url.database or "podrelay.db").with_suffix(".migrate.lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
