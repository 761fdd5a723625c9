"""Leases are taken and checked by the database's clock, so a worker whose own clock runs a
minute ahead still sees another worker's claim as held (PostgreSQL; SQLite is one machine)."""

from datetime import datetime, timedelta

import pytest

from app.core.db import utcnow
from app.jobs import service
from app.jobs.engine import JobEngine
from tests.jobs.helpers import make_job


def _a_minute_ahead() -> datetime:
    return utcnow() + timedelta(minutes=1)


async def test_a_worker_a_minute_ahead_cannot_take_a_claimed_job(
    engine: JobEngine, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("a SQLite ledger is one file on one machine, read by one clock")
    job_id = make_job(engine)
    with engine.db.session() as session:
        assert [job.id for job in service.claim(session, [job_id], lease_s=30)] == [job_id]
    monkeypatch.setattr(service, "utcnow", _a_minute_ahead)
    with engine.db.session() as session:
        assert service.claim(session, [job_id], lease_s=30) == []
