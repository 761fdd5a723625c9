"""`record_jobs`, the one way new jobs enter the ledger, records the same rows on both backends
(on PostgreSQL through one JSON document, on SQLite through a Core insert of many rows)."""

from datetime import timedelta
from typing import Any

from sqlalchemy import event, select

from app.jobs.engine import JobEngine
from app.jobs.models import Job, JobEvent
from app.jobs.service import NewJob, create_batch, record_jobs

_AWKWARD = 'quotes " \' and \\ backslashes, ünïcödé, 狐, 🦊, a\nnewline, {"json": [1]}'


def _new_jobs(batch_id: str) -> list[NewJob]:
    plain = NewJob(owner="alice", prompt="a red fox", params={"width": 512}, timeout_s=30.0)
    full = NewJob(
        owner="bob",
        prompt=_AWKWARD,
        negative_prompt="blurry",
        params={"width": 768, "nested": {"list": [1, 2.5, None, "x"], "flag": True}},
        timeout_s=12.5,
        webhook_url="https://example.com/hook?a=1&b=2",
        batch_id=batch_id,
        batch_index=3,
        celery_task_id="task-1",
        route="sdxl",
        priority=0,
        fair_tag=1234.5678,
        traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    )
    return [plain, full]


def _as_dict(job: Job) -> dict[str, Any]:
    names = ["owner", "prompt", "negative_prompt", "params", "timeout_s", "webhook_url"]
    names += ["batch_id", "batch_index", "celery_task_id", "route", "priority", "fair_tag"]
    names += ["traceparent", "status", "attempts", "polls", "runpod_job_id", "endpoint"]
    return {name: getattr(job, name) for name in names}


async def test_new_jobs_are_recorded_as_given_with_the_transactions_clock(
    engine: JobEngine,
) -> None:
    statements: list[str] = []
    event.listen(engine.db.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    with engine.db.session() as session:
        batch = create_batch(session, owner="bob", size=1)
        session.flush()
        new = _new_jobs(batch.id)
        before = len(statements)
        recorded = record_jobs(session, new)
        inserts = [s for s in statements[before:] if s.lstrip().upper().startswith("INSERT")]
    assert len(inserts) == 2  # one for the jobs, one for their events, whatever their number

    with engine.db.session() as session:
        for item, given in zip(recorded, new, strict=True):
            job = session.get_one(Job, given.id)
            expected = {
                **{name: getattr(given, name) for name in _as_dict(job) if hasattr(given, name)},
                **{"status": "pending", "attempts": 0, "polls": 0},
                **{"runpod_job_id": None, "endpoint": None},
            }
            assert _as_dict(job) == expected
            assert job.created_at == job.updated_at == job.next_poll_at == item.created_at
            assert job.deadline_at - job.created_at == timedelta(seconds=given.timeout_s)
            assert job.created_at.tzinfo is not None
            events = session.scalars(select(JobEvent).where(JobEvent.job_id == given.id)).all()
            assert [(e.kind, e.status, e.at) for e in events] == [
                ("created", "pending", item.created_at)
            ]
    assert record_jobs(session, []) == []
