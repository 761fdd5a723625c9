"""The tracker's tick: poll in batches, enforce deadlines, fetch result images, and send the
callers' webhooks. Submitting is the dispatcher's (`app.scheduler.dispatcher`).

Nothing waits on a job while RunPod works on it: every job carries `next_poll_at`, and a
periodic tick picks up whatever is due. One tick per `POLL_SWEEP_INTERVAL` passes the gate,
and each polls at most its share of RunPod's /status limit, so the rate never exceeds it.
"""

import asyncio
from dataclasses import dataclass
from datetime import timedelta
from typing import NamedTuple

from loguru import logger
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.db import database_now, utcnow
from app.core.tracing import job_span
from app.jobs.engine import JobEngine
from app.jobs.ledger import write_patiently
from app.jobs.media import store_due_images
from app.jobs.models import Job
from app.jobs.results import apply_state
from app.jobs.service import claim, lock_jobs, locked_job, move, release
from app.jobs.status import ACTIVE, JobStatus
from app.jobs.submit import cancel_quietly
from app.notify.deliveries import deliver_due
from app.runpod import JobState, NotFoundError, RunPodError
from app.scheduler.capacity import overdue_queued
from app.scheduler.routes import Endpoint

_LEASE_MARGIN_S = 10.0
# The most overdue queued jobs one health check reads (`poll_overdue_queued`): they use the
# spare of the /status allowance below.
OVERDUE_READS = 20
# Keep a tenth of RunPod's /status allowance spare for status calls made elsewhere.
_RATE_SHARE = 0.9


class Target(NamedTuple):
    """A job the tracker reads at RunPod: its id there, and the endpoint that has it."""

    job_id: str
    runpod_job_id: str | None
    endpoint_id: str | None
    traceparent: str | None = None  # the job's trace (`app.core.tracing`)


@dataclass
class TickReport:
    polled: int = 0
    timed_out: int = 0
    images: int = 0
    webhooks: int = 0


async def tick(engine: JobEngine) -> TickReport | None:
    """One pass of the tracker, or None when another one runs or just ran.

    Each phase is bounded by its own per-tick budget, so none starves the others: polls first
    (they finish jobs), then deadlines, image downloads and client webhooks.
    """
    settings = engine.settings
    if engine.tick_lock.locked():
        return None
    async with engine.tick_lock:
        if not engine.gate.try_pass("tracker", settings.poll_sweep_interval):
            return None
        report = TickReport()
        report.polled = await poll_due(engine)
        report.timed_out = await enforce_deadlines(engine)
        report.images = await store_due_images(engine)
        report.webhooks = await deliver_due(engine)  # after images, so job.completed has them
        return report


def _tick_share(engine: JobEngine, per_window: int) -> int:
    """One tick's share of a RunPod per-window rate limit."""
    settings = engine.settings
    per_tick = per_window * settings.poll_sweep_interval / settings.runpod_status_rate_window
    return max(1, int(per_tick * _RATE_SHARE))


def poll_budget(engine: JobEngine) -> int:
    return _tick_share(engine, engine.settings.runpod_status_rate_limit)


async def poll_due(engine: JobEngine) -> int:
    return await poll_jobs(engine)


async def poll_overdue_queued(engine: JobEngine, endpoint: Endpoint) -> int:
    """Read at RunPod the endpoint's oldest jobs held as queued past its route's
    `max_queue_delay` (OVERDUE_READS at most), and record what they are.

    In webhook mode the ledger learns that a job started only when it ends, so a job that
    runs longer than `max_queue_delay` would look stuck in the queue and take a healthy
    endpoint out of rotation (`app.scheduler.capacity`), whose failover would then cancel it
    mid-run. The health check reads them first; those that started are then running."""
    job_ids = await engine.db.run(overdue_queued, engine.settings, endpoint, OVERDUE_READS)
    return await poll_jobs(engine, job_ids) if job_ids else 0


async def poll_jobs(engine: JobEngine, job_ids: list[str] | None = None) -> int:
    """Read at RunPod the jobs due for a poll (or these, when given) that no other tracker
    holds, and record what RunPod says; returns how many were read."""
    lease_ends = asyncio.get_running_loop().time() + engine.settings.poll_lease
    targets = await engine.db.run(_claim_polls, engine, job_ids)
    if not targets:
        return 0
    readings = await asyncio.gather(*(_poll(engine, target) for target in targets))
    # Within the lease, a database outage delays the readings instead of stranding the jobs
    # until their lease ends.
    deadline = lease_ends - _LEASE_MARGIN_S
    await write_patiently(engine.db, deadline, _apply_readings, engine, targets, readings)
    return len(targets)


def _claim_polls(session: Session, engine: JobEngine, job_ids: list[str] | None) -> list[Target]:
    query = select(Job.id).where(Job.status.in_([JobStatus.QUEUED, JobStatus.RUNNING]))
    if job_ids is None:
        query = query.where(Job.next_poll_at <= utcnow()).order_by(Job.next_poll_at)
        query = query.limit(poll_budget(engine))
    else:
        query = query.where(Job.id.in_(job_ids))
    jobs = claim(session, list(session.scalars(query)), lease_s=engine.settings.poll_lease)
    return [Target(job.id, job.runpod_job_id or "", job.endpoint, job.traceparent) for job in jobs]


async def _poll(engine: JobEngine, target: Target) -> JobState | RunPodError:
    with job_span("podrelay.poll", target.job_id, target.traceparent) as span:
        reading = await _read(engine, target)
        if isinstance(reading, JobState):
            span.set_attribute("podrelay.runpod_status", reading.raw_status)
        return reading


def _apply_readings(
    session: Session,
    engine: JobEngine,
    targets: list[Target],
    readings: list[JobState | RunPodError],
) -> None:
    lock_jobs(session, (target.job_id for target in targets))
    now = database_now(session)
    for (job_id, runpod_id, *_), reading in zip(targets, readings, strict=True):
        job = locked_job(session, job_id)
        job.polls += 1
        if isinstance(reading, JobState):
            apply_state(session, job, reading, store=engine.store, source="poll")
        elif isinstance(reading, NotFoundError) and job.deadline_at <= now:
            # Its RunPod ttl ends shortly after our deadline (see `deadline_policy`).
            _time_out(session, job)
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
        release(job, next_check_at=utcnow() + timedelta(seconds=engine.next_check_delay(job.polls)))


async def _read(engine: JobEngine, target: Target) -> JobState | RunPodError:
    async with engine.runpod_slots:
        try:
            return await engine.client(target.endpoint_id).status(target.runpod_job_id or "")
        except RunPodError as error:
            return error


def _time_out(session: Session, job: Job) -> None:
    """Time the job out, saying whether RunPod ever had it."""
    if job.attempts == 0:
        code, reached = "expired_in_queue", "RunPod never had it: it waited in Podrelay's queue"
    elif job.runpod_job_id is None:
        code, reached = "deadline_exceeded", "RunPod never accepted it"
    else:
        code, reached = "deadline_exceeded", "RunPod had it"
    move(
        session,
        job,
        JobStatus.TIMED_OUT,
        error_code=code,
        message=f"the job did not finish within {job.timeout_s:g} s; {reached}",
        data={"reached_runpod": job.runpod_job_id is not None},
    )


async def enforce_deadlines(engine: JobEngine) -> int:
    """Time out active jobs past their deadline, cancelling them at RunPod. A job that did
    finish at RunPod meanwhile gets its real result instead; cancels stay within RunPod's limit."""
    targets = await engine.db.run(_claim_overdue, engine)
    if not targets:
        return 0
    readings = await asyncio.gather(
        *(_read(engine, target) for target in targets if target.runpod_job_id)
    )
    final = {
        reading.id: reading
        for reading in readings
        if isinstance(reading, JobState) and reading.is_terminal
    }
    # In a thread: a result that arrived meanwhile may carry images to store.
    to_cancel = await engine.db.run_in_thread(_settle_overdue, engine, targets, final)
    await asyncio.gather(
        *(cancel_quietly(engine, t.runpod_job_id or "", t.endpoint_id) for t in to_cancel)
    )
    return len(targets)


def _claim_overdue(session: Session, engine: JobEngine) -> list[Target]:
    overdue = (
        select(Job.id)
        .where(Job.status.in_([status.value for status in ACTIVE]))
        .where(Job.deadline_at <= database_now(session))
    )
    # Only jobs that reached RunPod need a (rate-limited) cancel there.
    unsent = session.scalars(overdue.where(Job.runpod_job_id.is_(None)).limit(500)).all()
    sent = session.scalars(
        overdue.where(Job.runpod_job_id.is_not(None)).limit(
            _tick_share(engine, engine.settings.runpod_cancel_rate_limit)
        )
    ).all()
    jobs = claim(session, [*unsent, *sent], lease_s=engine.settings.poll_lease)
    return [Target(job.id, job.runpod_job_id, job.endpoint) for job in jobs]


def _settle_overdue(
    session: Session,
    engine: JobEngine,
    targets: list[Target],
    final: dict[str, JobState],
) -> list[Target]:
    """Time out the overdue jobs (or record the result that came meanwhile); returns the
    RunPod jobs to cancel."""
    to_cancel: list[Target] = []
    lock_jobs(session, (target.job_id for target in targets))
    for target in targets:
        job_id, runpod_id = target.job_id, target.runpod_job_id
        job = locked_job(session, job_id)
        if runpod_id and runpod_id in final:
            apply_state(session, job, final[runpod_id], store=engine.store, source="deadline")
        else:
            _time_out(session, job)
            if runpod_id:
                to_cancel.append(target)
        release(job, next_check_at=None)
    return to_cancel
