"""The tracker's tick: resubmit, poll in batches, enforce deadlines, fetch result images.

Nothing waits on a job while RunPod works on it: every job carries `next_poll_at`, and a
periodic tick picks up whatever is due. One tick per `POLL_SWEEP_INTERVAL` passes the gate,
and each polls at most its share of RunPod's /status limit, so the rate never exceeds it.
"""

import asyncio
from dataclasses import dataclass
from datetime import timedelta

from loguru import logger
from sqlalchemy import select

from app.core.db import utcnow
from app.jobs.engine import JobEngine
from app.jobs.media import store_due_images
from app.jobs.models import Job
from app.jobs.results import apply_state
from app.jobs.service import claim, move, release
from app.jobs.status import ACTIVE, JobStatus
from app.jobs.submit import cancel_quietly, submit_job
from app.notify.deliveries import deliver_due
from app.runpod import JobState, NotFoundError, RunPodError

POLL_LEASE_S = 60.0
_CONCURRENCY = 64
# Keep a tenth of RunPod's /status allowance spare for status calls made elsewhere.
_RATE_SHARE = 0.9


@dataclass
class TickReport:
    submitted: int = 0
    polled: int = 0
    timed_out: int = 0
    images: int = 0
    webhooks: int = 0


async def tick(engine: JobEngine) -> TickReport | None:
    """One pass of the tracker, or None when another process just did one."""
    settings = engine.settings
    if not engine.gate.try_pass("tracker", settings.poll_sweep_interval):
        return None
    report = TickReport()
    report.timed_out = await enforce_deadlines(engine)
    report.submitted = await resubmit_due(engine)
    report.polled = await poll_due(engine)
    report.images = await store_due_images(engine)
    report.webhooks = await deliver_due(engine)  # after images, so job.completed has them
    return report


def poll_budget(engine: JobEngine) -> int:
    settings = engine.settings
    per_tick = settings.runpod_status_rate_limit * settings.poll_sweep_interval
    return max(1, int(per_tick / settings.runpod_status_rate_window * _RATE_SHARE))


def next_poll_delay(engine: JobEngine, job: Job) -> float:
    """Poll soon after submission, then back off to the configured interval."""
    if engine.settings.webhook_base_url:
        return engine.settings.webhook_safety_poll
    return min(engine.settings.runpod_poll_interval, 1.0 * 1.5 ** min(job.polls, 20))


async def poll_due(engine: JobEngine) -> int:
    now = utcnow()
    with engine.db.session() as session:
        due = session.scalars(
            select(Job.id)
            .where(Job.status.in_([JobStatus.QUEUED, JobStatus.RUNNING]))
            .where(Job.next_poll_at <= now)
            .order_by(Job.next_poll_at)
            .limit(poll_budget(engine))
        ).all()
        jobs = claim(session, list(due), lease_s=POLL_LEASE_S)
        targets = [(job.id, job.runpod_job_id or "") for job in jobs]
    if not targets:
        return 0
    limit = asyncio.Semaphore(_CONCURRENCY)

    async def read(runpod_job_id: str) -> JobState | RunPodError:
        async with limit:
            try:
                return await engine.runpod.status(runpod_job_id)
            except RunPodError as error:
                return error

    readings = await asyncio.gather(*(read(runpod_id) for _, runpod_id in targets))
    with engine.db.session() as session:
        for (job_id, runpod_id), reading in zip(targets, readings, strict=True):
            job = session.get_one(Job, job_id)
            job.polls += 1
            if isinstance(reading, JobState):
                apply_state(session, job, reading, store=engine.store, source="poll")
            elif isinstance(reading, NotFoundError):
                move(
                    session,
                    job,
                    JobStatus.FAILED,
                    error_code="lost_at_runpod",
                    message=f"RunPod no longer knows job {runpod_id}",
                )
            else:
                logger.warning("[RUNPOD TASK] polling {} failed: {}", job_id, reading)
            release(job, next_check_at=utcnow() + timedelta(seconds=next_poll_delay(engine, job)))
    return len(targets)


async def resubmit_due(engine: JobEngine) -> int:
    """Submit pending jobs whose submission is due: retries, and ones whose message was lost."""
    with engine.db.session() as session:
        due = session.scalars(
            select(Job.id)
            .where(Job.status == JobStatus.PENDING, Job.next_poll_at <= utcnow())
            .order_by(Job.next_poll_at)
            .limit(200)
        ).all()
    limit = asyncio.Semaphore(_CONCURRENCY)

    async def submit(job_id: str) -> None:
        async with limit:
            await submit_job(engine, job_id)

    await asyncio.gather(*(submit(job_id) for job_id in due))
    return len(due)


async def enforce_deadlines(engine: JobEngine) -> int:
    """Cancel at RunPod and time out every active job past its deadline."""
    with engine.db.session() as session:
        overdue = session.scalars(
            select(Job.id)
            .where(Job.status.in_([status.value for status in ACTIVE]))
            .where(Job.deadline_at <= utcnow())
            .limit(500)
        ).all()
        jobs = claim(session, list(overdue), lease_s=POLL_LEASE_S)
        to_cancel = [job.runpod_job_id for job in jobs if job.runpod_job_id]
        for job in jobs:
            move(
                session,
                job,
                JobStatus.TIMED_OUT,
                error_code="deadline_exceeded",
                message=f"the job did not finish within {job.timeout_s:g} s",
            )
            release(job, next_check_at=None)
    await asyncio.gather(*(cancel_quietly(engine, runpod_id) for runpod_id in to_cancel))
    return len(jobs)
