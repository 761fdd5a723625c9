"""Small builders for engine tests."""

import asyncio
import time

from sqlalchemy import select

from app.jobs.dispatch import Dispatcher
from app.jobs.engine import JobEngine
from app.jobs.models import Job, JobEvent
from app.jobs.status import JobStatus
from app.jobs.tracking import tick
from app.services.generation_defaults import GenerationParams
from tests.factories import add_job

SMALL = GenerationParams(width=256, height=256)


def make_job(
    engine: JobEngine,
    prompt: str = "a red fox",
    *,
    params: GenerationParams = SMALL,
    timeout_s: float = 30.0,
) -> str:
    with engine.db.session() as session:
        return add_job(session, prompt=prompt, params=params, timeout_s=timeout_s).id


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
