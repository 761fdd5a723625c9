"""`lock_jobs` locks many job rows with one query; `locked_job` then needs no query of its own."""

import sqlite3

import psycopg
import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import OperationalError

from app.jobs.engine import JobEngine
from app.jobs.models import Job
from app.jobs.service import lock_jobs, locked_job
from tests.jobs.helpers import make_job


def _record_statements(engine: JobEngine) -> list[str]:
    statements: list[str] = []
    event.listen(
        engine.db.engine,
        "before_cursor_execute",
        lambda *args: statements.append(args[2]),
    )
    return statements


async def test_locked_jobs_are_served_from_the_session(engine: JobEngine) -> None:
    ids = [make_job(engine, f"p{n}") for n in range(3)]
    statements = _record_statements(engine)
    with engine.db.session() as session:
        locked = lock_jobs(session, [*reversed(ids), "job_unknown"])
        assert sorted(locked) == sorted(ids)
        before = len(statements)
        assert all(locked_job(session, job_id) is locked[job_id] for job_id in ids)
        assert len(statements) == before  # no query for a job already locked
    with engine.db.session() as session:  # a new transaction holds no lock yet
        before = len(statements)
        locked_job(session, ids[0])
        if engine.db.engine.dialect.name == "postgresql":
            assert statements[before:] == [statements[-1]]
            assert "FOR UPDATE" in statements[-1]
        else:  # no row locks: the database's write lock, then the row
            assert len(statements) == before + 2
            assert statements[-2].startswith("UPDATE jobs")


async def test_sqlite_stays_locked_until_the_transaction_ends(
    engine: JobEngine, database_url: str
) -> None:
    if not database_url.startswith("sqlite"):
        pytest.skip("PostgreSQL locks rows, not the whole database")
    [job_id] = [make_job(engine)]
    path = database_url.removeprefix("sqlite:///")
    with engine.db.session() as session:
        locked_job(session, job_id)
        other = sqlite3.connect(path, timeout=0.2)
        with pytest.raises(sqlite3.OperationalError, match="database is locked"):
            other.execute("UPDATE jobs SET polls = polls + 1 WHERE id = ?", (job_id,))
        other.rollback()
    other.execute("UPDATE jobs SET polls = polls + 1 WHERE id = ?", (job_id,))  # released
    other.commit()
    other.close()


async def test_rows_stay_locked_until_the_transaction_ends(
    engine: JobEngine, database_url: str
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite locks the whole file, not rows")
    ids = [make_job(engine, f"p{n}") for n in range(2)]
    with engine.db.session() as session:
        lock_jobs(session, ids)
        with engine.db.session() as other, pytest.raises(OperationalError) as refused:
            other.execute(
                text("SELECT id FROM jobs WHERE id = :id FOR UPDATE NOWAIT"), {"id": ids[1]}
            )
        assert isinstance(refused.value.orig, psycopg.errors.LockNotAvailable)
    with engine.db.session() as other:  # released at commit
        assert other.get(Job, ids[1], with_for_update={"nowait": True}) is not None
