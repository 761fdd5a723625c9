"""Hand a pending job to RunPod: POST /run once, and decide what to do when it fails.

A failure before RunPod saw the request is retried later from the database (3 attempts, backoff
from 60 s by default). After an ambiguous failure the job may already run at RunPod; each
attempt carries its own webhook token, so such an orphan is recognised when its webhook
arrives, and only one result is ever kept (see `app.jobs.webhooks`).
"""

import asyncio
from datetime import timedelta

from loguru import logger
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.batching import GroupRunner
from app.core.db import utcnow
from app.core.tracing import job_span
from app.jobs.claims import Prepared, prepare
from app.jobs.engine import JobEngine
from app.jobs.ledger import write_patiently
from app.jobs.models import Job, Submission
from app.jobs.service import add_event, lock_jobs, move, release
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
from app.scheduler.circuit import endpoint_failed, record_run_outcomes

# Recording RunPod's answers is retried until this long before the lease ends.
RECORD_MARGIN_S = 10.0
FIRST_POLL_S = 1.0


# A prepared job and what RunPod answered to its POST /run.
_Answer = tuple[Prepared, JobState | RunPodError]


async def submit_job(engine: JobEngine, job_id: str) -> None:
    """Submit the job if it still needs it; safe to call twice, even at the same time."""
    await submit_jobs(engine, [job_id])


async def submit_jobs(engine: JobEngine, job_ids: list[str]) -> int:
    """Submit these jobs now if they still need it, each to its route's first endpoint (the
    seed's tasks ask for their own; the dispatcher sends the queue's); returns how many were
    sent to RunPod."""
    sent = 0
    for route, ids in (await engine.db.run(_by_route, job_ids)).items():
        endpoint = engine.catalogue.routes[route].endpoints[0]
        prepared = await engine.db.run(prepare, engine.settings, endpoint, job_ids=ids)
        if prepared:
            bucket = run_bucket(engine.settings)
            await engine.allowance.acquire(endpoint.id, len(prepared), bucket)
            await send_prepared(engine, prepared)
        sent += len(prepared)
    return sent


def _by_route(session: Session, job_ids: list[str]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for job_id, route in session.execute(select(Job.id, Job.route).where(Job.id.in_(job_ids))):
        found.setdefault(route, []).append(job_id)
    return found


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
                await cancel_quietly(engine, duplicate, item.endpoint_id)

    outcomes = await asyncio.gather(*(submit(item) for item in prepared), return_exceptions=True)
    # Raised only once every answer had its chance to be recorded.
    for outcome in outcomes:
        if outcome is not None:
            raise outcome


async def _send(engine: JobEngine, item: Prepared) -> JobState | RunPodError:
    async with engine.runpod_slots:
        try:
            return await engine.client(item.endpoint_id).run(
                item.job_input,
                webhook=engine.webhook_url(item.token),
                policy=deadline_policy(item.remaining_s),
            )
        except RunPodError as error:
            return error


def _record(session: Session, engine: JobEngine, answers: list[_Answer]) -> list[str | None]:
    """Store what RunPod answered, in one transaction, and count it towards each endpoint's
    circuit; for each answer, the RunPod job to cancel as a duplicate, if any."""
    _count_outcomes(session, engine, answers)
    duplicates: list[str | None] = []
    tokens = [item.token for item, _ in answers]
    submissions = {
        submission.token: submission
        for submission in session.scalars(select(Submission).where(Submission.token.in_(tokens)))
    }
    jobs = lock_jobs(session, (item.job_id for item, _ in answers))
    for item, outcome in answers:
        submission = submissions[item.token]
        if isinstance(outcome, RunPodError):
            _record_failure(session, engine, jobs[item.job_id], submission, outcome)
            duplicates.append(None)
        else:
            duplicates.append(
                _record_acceptance(session, engine, jobs[item.job_id], submission, outcome)
            )
    return duplicates


def _count_outcomes(session: Session, engine: JobEngine, answers: list[_Answer]) -> None:
    by_endpoint: dict[str, tuple[int, list[str]]] = {}
    for item, outcome in answers:
        accepted, failures = by_endpoint.get(item.endpoint_id, (0, []))
        if isinstance(outcome, JobState):
            accepted += 1
        elif endpoint_failed(outcome):
            failures.append(outcome.message)
        by_endpoint[item.endpoint_id] = (accepted, failures)
    for endpoint_id, (accepted, failures) in by_endpoint.items():
        record_run_outcomes(session, engine.settings, endpoint_id, accepted, failures)


async def cancel_quietly(engine: JobEngine, runpod_job_id: str, endpoint_id: str | None) -> None:
    try:
        async with engine.runpod_slots:
            await engine.client(endpoint_id).cancel(runpod_job_id)
    except RunPodError as error:
        logger.warning("[RUNPOD TASK] could not cancel RunPod job {}: {}", runpod_job_id, error)


def _record_acceptance(
    session: Session, engine: JobEngine, job: Job, submission: Submission, state: JobState
) -> str | None:
    """Store the RunPod id; returns a RunPod job to cancel when this one is not needed."""
    submission.outcome, submission.runpod_job_id = "accepted", state.id
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
    session: Session, engine: JobEngine, job: Job, submission: Submission, error: RunPodError
) -> None:
    settings = engine.settings
    ambiguous = isinstance(error, AmbiguousSubmissionError)
    submission.outcome = "ambiguous" if ambiguous else "rejected"
    submission.error = error.message
    if not ambiguous and job.endpoint == submission.endpoint:
        job.endpoint = None  # RunPod never had it: any endpoint may take it next
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
