"""Small builders for the jobs suite: jobs in an engine's ledger, and what RunPod's answer
means for one."""

import asyncio
import time
from typing import Any

from sqlalchemy import select

from app.jobs.dispatch import Dispatcher
from app.jobs.engine import JobEngine
from app.jobs.models import Job, JobEvent
from app.jobs.status import JobStatus
from app.jobs.tracking import tick
from app.services.generation_defaults import GenerationParams
from tests.factories import SMALL, add_job


def make_job(
    engine: JobEngine,
    prompt: str = "a red fox",
    *,
    params: GenerationParams = SMALL,
    timeout_s: float = 30.0,
    **fields: Any,
) -> str:
    with engine.db.session() as session:
        return add_job(session, prompt=prompt, params=params, timeout_s=timeout_s, **fields).id


def load(engine: JobEngine, job_id: str) -> Job:
    with engine.db.session() as session:
        job = session.get_one(Job, job_id)
        _ = job.images, job.submissions  # load before the session closes
        return job


def event_kinds(engine: JobEngine, job_id: str) -> list[tuple[str, str | None]]:
    with engine.db.session() as session:
        events = session.scalars(
            select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id)
        )
        return [(event.kind, event.status) for event in events]


async def track_until_terminal(engine: JobEngine, *job_ids: str, timeout: float = 20.0) -> None:
    """Drive the engine as a worker would: dispatch rounds (submissions and their retries)
    and tracker ticks, until the jobs are final with their images."""
    dispatcher = Dispatcher(engine)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        await dispatcher.check_due_endpoints()
        await dispatcher.dispatch_round()
        await tick(engine)
        statuses = [JobStatus(load(engine, job_id).status) for job_id in job_ids]
        if all(status.is_terminal for status in statuses) and not pending_images(engine):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"jobs not terminal after {timeout}s: {statuses}")


def pending_images(engine: JobEngine) -> int:
    from app.jobs.models import JobImage

    with engine.db.session() as session:
        return len(session.scalars(select(JobImage.id).where(JobImage.state == "pending")).all())


def runpod_state_of(body: dict[str, Any]) -> tuple[str, str | None]:
    """What the ledger should say for a kept RunPod job: (status, error_code)."""
    status = body.get("status")
    if status == "COMPLETED":
        if body.get("output"):
            return JobStatus.COMPLETED.value, None
        return JobStatus.FAILED.value, "output_missing"
    if status == "FAILED":
        return JobStatus.FAILED.value, "worker_failed"
    if status == "CANCELLED":
        return JobStatus.CANCELLED.value, "cancelled_at_runpod"
    if status == "TIMED_OUT":
        return JobStatus.TIMED_OUT.value, "runpod_timed_out"
    return f"not terminal at RunPod ({status})", None
