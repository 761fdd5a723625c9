"""Hand a pending job to RunPod: POST /run once, and decide what to do when it fails.

A failure before RunPod saw the request is retried later from the database (3 attempts, backoff
from 60 s by default). After an ambiguous failure the job may already run at RunPod; each
attempt carries its own webhook token, so such an orphan is recognised when its webhook
arrives, and only one result is ever kept (see `app.jobs.webhooks`).
"""

import asyncio
import secrets
from dataclasses import dataclass
from datetime import timedelta
from itertools import groupby
from typing import Any

from loguru import logger
from sqlalchemy import Row, insert, or_, select, update
from sqlalchemy.orm import Session

from app.core.batching import GroupRunner
from app.core.config import Settings
from app.core.db import database_now, utcnow
from app.core.tracing import job_span
from app.jobs.engine import JobEngine
from app.jobs.ledger import write_patiently
from app.jobs.models import Job, Submission
from app.jobs.service import SENDING, add_event, lock_jobs, locked_job, move, release
from app.jobs.status import JobStatus
from app.runpod import (
    AmbiguousSubmissionError,
    AuthenticationError,
    JobState,
    NotFoundError,
    RunPodError,
)
from app.runpod.client import deadline_policy
from app.scheduler.capacity import run_bucket
from app.scheduler.fair import advance_clock
from app.scheduler.routes import Endpoint
from app.services.generation_defaults import GenerationParams, build_runpod_input

# Recording RunPod's answers is retried until this long before the lease ends.
RECORD_MARGIN_S = 10.0
FIRST_POLL_S = 1.0
_SUBMISSIONS = Submission.metadata.tables[Submission.__tablename__]


@dataclass(frozen=True, slots=True)
class Prepared:
    """A claimed job with its submission open: what its POST /run sends."""

    job_id: str
    token: str
    job_input: dict[str, Any]
    remaining_s: float
    traceparent: str | None = None  # the job's trace (`app.core.tracing`)


# A prepared job and what RunPod answered to its POST /run.
_Answer = tuple[Prepared, JobState | RunPodError]


async def submit_job(engine: JobEngine, job_id: str) -> None:
    """Submit the job if it still needs it; safe to call twice, even at the same time."""
    await submit_jobs(engine, [job_id])


async def submit_jobs(engine: JobEngine, job_ids: list[str]) -> int:
    """Submit these jobs now if they still need it (the seed's tasks ask for their own; the
    dispatcher sends the queue's); returns how many were sent to RunPod."""
    endpoint = engine.endpoint
    prepared = await engine.db.run(prepare, engine.settings, endpoint, job_ids=job_ids)
    if prepared:
        await engine.allowance.acquire(endpoint.id, len(prepared), run_bucket(engine.settings))
        await send_prepared(engine, prepared)
    return len(prepared)


async def send_prepared(engine: JobEngine, prepared: list[Prepared]) -> None:
    """POST /run each prepared job, concurrently, and record each answer as soon as it arrives:
    until then a kill -9 loses its RunPod id, and the job would run twice at RunPod. Answers
    that arrive while one group is being recorded share the next transaction."""
    lease_ends = asyncio.get_running_loop().time() + engine.settings.submit_lease
    # RunPod's answers exist only here until recorded: wait out a database outage for them.

    async def record(answers: list[_Answer]) -> list[str | None]:
        deadline = lease_ends - RECORD_MARGIN_S
        return await write_patiently(engine.db, deadline, _record, engine, answers)

    recorder: GroupRunner[_Answer, str | None] = GroupRunner(record, parallel=1)

    async def submit(item: Prepared) -> None:
        with job_span("podrelay.submit", item.job_id, item.traceparent):
            duplicate = await recorder.run((item, await _send(engine, item)))
            if duplicate:
                await cancel_quietly(engine, duplicate)

    outcomes = await asyncio.gather(*(submit(item) for item in prepared), return_exceptions=True)
    # Raised only once every answer had its chance to be recorded.
    for outcome in outcomes:
        if outcome is not None:
            raise outcome


async def _send(engine: JobEngine, item: Prepared) -> JobState | RunPodError:
    async with engine.runpod_slots:
        try:
            return await engine.runpod.run(
                item.job_input,
                webhook=engine.webhook_url(item.token),
                policy=deadline_policy(item.remaining_s),
            )
        except RunPodError as error:
            return error


def _record(session: Session, engine: JobEngine, answers: list[_Answer]) -> list[str | None]:
    """Store what RunPod answered, in one transaction; for each answer, the RunPod job to cancel
    as a duplicate, if any."""
    duplicates: list[str | None] = []
    tokens = [item.token for item, _ in answers]
    submissions = {
        submission.token: submission
        for submission in session.scalars(select(Submission).where(Submission.token.in_(tokens)))
    }
    lock_jobs(session, (item.job_id for item, _ in answers))
    for item, outcome in answers:
        submission = submissions[item.token]
        if isinstance(outcome, RunPodError):
            _record_failure(session, engine, item.job_id, submission, outcome)
            duplicates.append(None)
        else:
            duplicates.append(_record_acceptance(session, engine, item.job_id, submission, outcome))
    return duplicates


def prepare(
    session: Session,
    settings: Settings,
    endpoint: Endpoint,
    *,
    job_ids: list[str] | None = None,
    limit: int = 0,
) -> list[Prepared]:
    """Claim pending jobs and open a submission to `endpoint` for each: the given jobs, or the
    next `limit` of the endpoint's route in dispatch order (priority, then fair tag). A job
    already claimed, submitted or past its deadline is left out (the deadline is the
    tracker's: `enforce_deadlines`)."""
    now = database_now(session)
    claimable = [
        Job.status == JobStatus.PENDING.value,
        Job.runpod_job_id.is_(None),
        or_(Job.claimed_until.is_(None), Job.claimed_until < now),
        Job.deadline_at > now,
    ]
    if job_ids is None:
        job_ids = list(
            session.scalars(
                select(Job.id)
                .where(*claimable, Job.route == endpoint.route, Job.next_poll_at <= now)
                .order_by(Job.priority, Job.fair_tag)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
        )
    if not job_ids:
        return []
    claimed = session.execute(
        update(Job)
        .where(Job.id.in_(job_ids), *claimable)
        .values(
            claim_token=secrets.token_hex(8),
            claimed_until=now + timedelta(seconds=settings.submit_lease),
            attempts=Job.attempts + 1,
            endpoint=endpoint.id,
            updated_at=now,
        )
        .returning(
            Job.id,
            Job.prompt,
            Job.negative_prompt,
            Job.params,
            Job.deadline_at,
            Job.attempts,
            Job.route,
            Job.priority,
            Job.fair_tag,
            Job.traceparent,
        )
        .execution_options(synchronize_session=False)
    ).all()
    if not claimed:
        return []
    close_unanswered(session, [row.id for row in claimed if row.attempts > 1])
    prepared = [
        Prepared(
            job_id=row.id,
            token=secrets.token_urlsafe(24),
            job_input=build_runpod_input(
                row.prompt, row.negative_prompt, GenerationParams.model_validate(row.params)
            ),
            remaining_s=(row.deadline_at - now).total_seconds(),
            traceparent=row.traceparent,
        )
        for row in claimed
    ]
    session.execute(
        insert(_SUBMISSIONS),
        [
            {
                "job_id": item.job_id,
                "token": item.token,
                "outcome": SENDING,
                "endpoint": endpoint.id,
                "created_at": now,
            }
            for item in prepared
        ],
    )
    for queue, rows in groupby(sorted(claimed, key=_queue), key=_queue):
        advance_clock(session, queue, max(row.fair_tag for row in rows))
    return prepared


def _queue(row: Row[Any]) -> tuple[str, int]:
    return (row.route, row.priority)


def close_unanswered(session: Session, job_ids: list[str]) -> None:
    """Attempts still `sending` were cut off (their worker stopped) before RunPod's answer was
    recorded, so RunPod may be running them. With webhooks, the orphan's webhook names it and it
    is cancelled; without, nothing ever will (RunPod lists no jobs), so the job's timeline and
    the submission say so."""
    if not job_ids:
        return
    by_id = {job.id: job for job in session.scalars(select(Job).where(Job.id.in_(job_ids)))}
    query = select(Submission).where(Submission.job_id.in_(by_id), Submission.outcome == SENDING)
    for submission in session.scalars(query):
        submission.outcome = "ambiguous"
        submission.error = "the worker stopped before RunPod's answer was recorded"
        add_event(
            session,
            by_id[submission.job_id],
            "submission_in_doubt",
            message="an earlier attempt may be running at RunPod; its result is not kept",
            data={"submission_id": submission.id},
        )


async def cancel_quietly(engine: JobEngine, runpod_job_id: str) -> None:
    try:
        async with engine.runpod_slots:
            await engine.runpod.cancel(runpod_job_id)
    except RunPodError as error:
        logger.warning("[RUNPOD TASK] could not cancel RunPod job {}: {}", runpod_job_id, error)


def _record_acceptance(
    session: Session, engine: JobEngine, job_id: str, submission: Submission, state: JobState
) -> str | None:
    """Store the RunPod id; returns a RunPod job to cancel when this one is not needed."""
    submission.outcome, submission.runpod_job_id = "accepted", state.id
    job = locked_job(session, job_id)
    if job.runpod_job_id == state.id:
        return None  # a write retried after its first commit did land (see write_patiently)
    if job.runpod_job_id or JobStatus(job.status).is_terminal:
        # Cancelled meanwhile, or an earlier ambiguous attempt was found by its webhook.
        add_event(session, job, "duplicate_cancelled", message=state.id)
        release(job, next_check_at=job.next_poll_at)
        return state.id
    job.runpod_job_id = state.id
    move(session, job, JobStatus.QUEUED, data={"runpod_job_id": state.id})
    by_webhook = engine.webhook_url(submission.token) is not None
    safety = engine.settings.webhook_safety_poll if by_webhook else FIRST_POLL_S
    release(job, next_check_at=utcnow() + timedelta(seconds=safety))
    return None


def _record_failure(
    session: Session, engine: JobEngine, job_id: str, submission: Submission, error: RunPodError
) -> None:
    settings = engine.settings
    ambiguous = isinstance(error, AmbiguousSubmissionError)
    submission.outcome = "ambiguous" if ambiguous else "rejected"
    submission.error = error.message
    job = locked_job(session, job_id)
    if JobStatus(job.status).is_terminal or job.runpod_job_id:
        release(job, next_check_at=job.next_poll_at)
        return
    if error.retryable and job.attempts < settings.submit_max_attempts:
        delay = settings.submit_retry_base * 2 ** (job.attempts - 1)
        add_event(session, job, "submit_retry", message=error.message, data={"in_s": delay})
        logger.warning(
            "[RUNPOD TASK] job {} submission failed, retry in {}s: {}", job.id, delay, error.message
        )
        release(job, next_check_at=utcnow() + timedelta(seconds=delay))
        return
    move(session, job, JobStatus.FAILED, error_code=_failure_code(error), message=error.message)
    release(job, next_check_at=None)


def _failure_code(error: RunPodError) -> str:
    if isinstance(error, AmbiguousSubmissionError):
        return "submission_ambiguous"
    if isinstance(error, AuthenticationError):
        return "runpod_auth_failed"
    if isinstance(error, NotFoundError):
        return "runpod_endpoint_not_found"
    if error.retryable:
        return "runpod_unavailable"
    return "runpod_rejected"
