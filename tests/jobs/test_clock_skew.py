"""Leases and deadlines are checked by the database's clock, so a worker whose own clock runs a
minute ahead still sees another worker's claim as held, and a job with time left as such
(PostgreSQL; SQLite is one machine)."""

from datetime import datetime, timedelta

import pytest

from app.core.db import utcnow
from app.jobs import service, tracking
from app.jobs.engine import JobEngine
from tests.jobs.helpers import load, make_job


def _a_minute_ahead() -> datetime:
    return utcnow() + timedelta(minutes=1)


@pytest.fixture
def postgres_only(database_url: str) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("a SQLite ledger is one file on one machine, read by one clock")


@pytest.mark.usefixtures("postgres_only")
async def test_a_worker_a_minute_ahead_cannot_take_a_claimed_job(
    engine: JobEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = make_job(engine)
    with engine.db.session() as session:
        assert [job.id for job in service.claim(session, [job_id], lease_s=30)] == [job_id]
    monkeypatch.setattr(service, "utcnow", _a_minute_ahead)
    with engine.db.session() as session:
        assert service.claim(session, [job_id], lease_s=30) == []


@pytest.mark.usefixtures("postgres_only")
async def test_a_worker_a_minute_ahead_times_out_no_job_with_time_left(
    engine: JobEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = make_job(engine, timeout_s=30.0)
    for module in (service, tracking):
        monkeypatch.setattr(module, "utcnow", _a_minute_ahead)
    assert await tracking.enforce_deadlines(engine) == 0
    assert load(engine, job_id).status == "pending"
