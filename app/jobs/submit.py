"""Hand a pending job to RunPod: POST /run once, and decide what to do when it fails.

A failure before RunPod saw the request is retried later from the database (3 attempts, backoff
from 60 s by default). After an ambiguous failure the job may already run at RunPod; each
attempt carries its own webhook token, so such an orphan is recognised when its webhook
arrives, and only one result is ever kept (see `app.jobs.webhooks`).
"""

import asyncio
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Any

from loguru import logger
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.batching import GroupRunner
from app.core.db import database_now, utcnow
from app.jobs.engine import JobEngine
from app.jobs.ledger import write_patiently
from app.jobs.models import Job, Submission
from app.jobs.service import (
    SENDING,
    add_event,
    claim,
    lock_jobs,
    locked_job,
    move,
    new_submission,
    release,
)
from app.jobs.status import JobStatus
from app.runpod import (
    AmbiguousSubmissionError,
    AuthenticationError,
    JobState,
    NotFoundError,
    RunPodError,
)
from app.runpod.client import deadline_policy
from app.services.generation_defaults import GenerationParams, build_runpod_input

# Recording RunPod's answers is retried until this long before the lease ends.
RECORD_MARGIN_S = 10.0
FIRST_POLL_S = 1.0


@dataclass(frozen=True)
class _Prepared:
    job_id: str
    token: str
    job_input: dict[str, Any]
    remaining_s: float


# A prepared job and what RunPod answered to its POST /run.
_Answer = tuple[_Prepared, JobState | RunPodError]


async def submit_job(engine: JobEngine, job_id: str) -> None:
    """Submit the job if it still needs it; safe to call twice, even at the same time."""
    await submit_jobs(engine, [job_id])


async def submit_jobs(engine: JobEngine, job_ids: list[str]) -> int:
    """Submit many jobs, their POST /run calls concurrent; returns how many were sent to RunPod.

    Each answer is recorded as soon as it arrives: until then a kill -9 loses its RunPod id, and
    the job would run twice at RunPod. Answers that arrive while one group is being recorded
    share the next transaction.
    """
    # The ledger work runs off the event loop, so one batch's database round trips do not
    # stall every other submission, poll and download of this process.
    lease_ends = asyncio.get_running_loop().time() + engine.settings.submit_lease
    prepared = await asyncio.to_thread(_prepare, engine, job_ids)
    if not prepared:
        return 0
    # RunPod's answers exist only here until recorded: wait out a database outage for them.
    recorder: GroupRunner[_Answer, str | None] = GroupRunner(
        partial(write_patiently, lease_ends - RECORD_MARGIN_S, partial(_record, engine)),
        parallel=1,
    )

    async def submit(item: _Prepared) -> None:
        duplicate = await recorder.run((item, await _send(engine, item)))
        if duplicate:
            await cancel_quietly(engine, duplicate)

    outcomes = await asyncio.gather(*(submit(item) for item in prepared), return_exceptions=True)
    # Raised only once every answer had its chance to be recorded.
    for outcome in outcomes:
        if outcome is not None:
            raise outcome
    return len(prepared)


async def _send(engine: JobEngine, item: _Prepared) -> JobState | RunPodError:
    async with engine.runpod_slots:
        try:
            return await engine.runpod.run(
                item.job_input,
                webhook=engine.webhook_url(item.token),
                policy=deadline_policy(item.remaining_s),
            )
        except RunPodError as error:
            return error


def _record(engine: JobEngine, answers: list[_Answer]) -> list[str | None]:
    """Store what RunPod answered, in one transaction; for each answer, the RunPod job to cancel
    as a duplicate, if any."""
    duplicates: list[str | None] = []
    with engine.db.session() as session:
        tokens = [item.token for item, _ in answers]
        submissions = {
            submission.token: submission
            for submission in session.scalars(
                select(Submission).where(Submission.token.in_(tokens))
            )
        }
        lock_jobs(session, (item.job_id for item, _ in answers))
        for item, outcome in answers:
            submission = submissions[item.token]
            if isinstance(outcome, RunPodError):
                _record_failure(session, engine, item.job_id, submission, outcome)
                duplicates.append(None)
            else:
                duplicates.append(
                    _record_acceptance(session, engine, item.job_id, submission, outcome)
                )
    return duplicates


def _prepare(engine: JobEngine, job_ids: list[str]) -> list[_Prepared]:
    """Claim the jobs that still need submitting and open a submission for each."""
    prepared: list[_Prepared] = []
    with engine.db.session() as session:
        jobs = claim(session, job_ids, lease_s=engine.settings.submit_lease)
        _close_unanswered(session, jobs)
        now = database_now(session)
        for job in jobs:
            if job.status != JobStatus.PENDING or job.runpod_job_id:
                release(job, next_check_at=job.next_poll_at)
                continue
            remaining = (job.deadline_at - now).total_seconds()
            if remaining <= 0:
                move(
                    session,
                    job,
                    JobStatus.TIMED_OUT,
                    error_code="deadline_exceeded",
                    message="the job was not accepted by RunPod before its deadline",
                )
                release(job, next_check_at=None)
                continue
            job_input = build_runpod_input(
                job.prompt, job.negative_prompt, GenerationParams.model_validate(job.params)
            )
            token = new_submission(session, job).token
            prepared.append(_Prepared(job.id, token, job_input, remaining))
    return prepared


def _close_unanswered(session: Session, jobs: list[Job]) -> None:
    """Attempts still `sending` were cut off (their worker stopped) before RunPod's answer was
    recorded, so RunPod may be running them. With webhooks, the orphan's webhook names it and it
    is cancelled; without, nothing ever will (RunPod lists no jobs), so the job's timeline and
    the submission say so."""
    by_id = {job.id: job for job in jobs}
    if not by_id:
        return
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
