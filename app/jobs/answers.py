"""Recording what RunPod answered to a group of POST /run calls, in one transaction.

An acceptance is the hot path of every dispatch (up to RunPod's /run allowance, 100 a second
per endpoint), so its rows are written with Core statements, a few per group whatever its
size: the ORM's unit of work cost a worker more CPU per job than the HTTP call itself. A
refusal is rare and keeps the ORM (`_record_failure`): it decides between a retry and a
failure, and a failure is a terminal `move` with its notifications.

Per accepted answer, under the job's row lock:
- the job was waiting for it (`pending`, no RunPod id): it becomes `queued` with the RunPod id,
  its lease is released and its next check set (a safety poll when a webhook will tell);
- the job already has this RunPod id: a write retried after its first commit did land;
- otherwise (cancelled meanwhile, or an earlier ambiguous attempt was found by its webhook):
  the new RunPod job is a duplicate, returned for the caller to cancel.
"""

from datetime import timedelta
from typing import NamedTuple

from loguru import logger
from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm import Session

from app.core.db import database_now, utcnow
from app.jobs.claims import Prepared
from app.jobs.engine import JobEngine
from app.jobs.models import Job, JobEvent, Submission
from app.jobs.service import (
    add_event,
    event_row,
    insert_rows,
    lock_job_rows,
    lock_jobs,
    move,
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
from app.scheduler.circuit import endpoint_failed, record_run_outcomes

_QUEUED = JobStatus.QUEUED.value
_JOBS = Job.metadata.tables[Job.__tablename__]
_SUBMISSIONS = Submission.metadata.tables[Submission.__tablename__]
_EVENTS = JobEvent.metadata.tables[JobEvent.__tablename__]

_MARK_ACCEPTED = (
    update(_SUBMISSIONS)
    .where(_SUBMISSIONS.c.token == bindparam("b_token"))
    .values(outcome="accepted", runpod_job_id=bindparam("b_runpod_id"))
)
_RELEASE = (
    update(_JOBS)
    .where(_JOBS.c.id == bindparam("b_id"))
    .values(claimed_until=None, claim_token=None)
)

# A prepared job and what RunPod answered to its POST /run.
Answer = tuple[Prepared, JobState | RunPodError]


class _Held(NamedTuple):
    status: str
    runpod_job_id: str | None


def record_answers(session: Session, engine: JobEngine, answers: list[Answer]) -> list[str | None]:
    """Store what RunPod answered and count it towards each endpoint's circuit; for each
    answer, the RunPod job to cancel as a duplicate, if any."""
    _count_outcomes(session, engine, answers)
    rows = lock_job_rows(
        session, (item.job_id for item, _ in answers), Job.status, Job.runpod_job_id
    )
    held = {row.id: _Held(row.status, row.runpod_job_id) for row in rows}
    accepted = [(item, state) for item, state in answers if isinstance(state, JobState)]
    duplicates = _record_acceptances(session, engine, held, accepted)
    failed = [(item, error) for item, error in answers if isinstance(error, RunPodError)]
    if failed:
        _record_failures(session, engine, failed)
    return [duplicates.get(item.token) for item, _ in answers]


def _record_acceptances(
    session: Session,
    engine: JobEngine,
    held: dict[str, _Held],
    accepted: list[tuple[Prepared, JobState]],
) -> dict[str, str]:
    """Apply the acceptances (see the module); returns the duplicates by submission token."""
    if not accepted:
        return {}
    queued: list[tuple[Prepared, str]] = []
    duplicates: dict[str, str] = {}
    for item, state in accepted:
        job = held.get(item.job_id)
        if job is None or job.runpod_job_id == state.id:
            continue
        if job.runpod_job_id or job.status != JobStatus.PENDING:
            duplicates[item.token] = state.id
        else:
            queued.append((item, state.id))
            # A second answer for the job in this group is then its duplicate.
            held[item.job_id] = _Held(_QUEUED, state.id)
    session.execute(
        _MARK_ACCEPTED, [{"b_token": item.token, "b_runpod_id": s.id} for item, s in accepted]
    )
    _queue(session, engine, queued)
    if duplicates:
        by_token = {item.token: item for item, _ in accepted}
        session.execute(_RELEASE, [{"b_id": by_token[t].job_id} for t in duplicates])
        cancelled = {by_token[token].job_id: runpod_id for token, runpod_id in duplicates.items()}
        at = utcnow()
        events = [
            event_row(job_id, "duplicate_cancelled", held[job_id].status, at=at, message=runpod_id)
            for job_id, runpod_id in cancelled.items()
        ]
        insert_rows(session, _EVENTS, events)
    return duplicates


def _queue(session: Session, engine: JobEngine, queued: list[tuple[Prepared, str]]) -> None:
    """`pending -> queued` for jobs RunPod now holds: the step `move` takes, for many jobs in
    one statement, with its timeline event and log line."""
    if not queued:
        return
    now = database_now(session)
    at = utcnow()
    next_check = at + timedelta(seconds=engine.next_check_delay(polls=0))
    statement = (
        update(_JOBS)
        .where(_JOBS.c.id == bindparam("b_id"))
        .values(
            runpod_job_id=bindparam("b_runpod_id"),
            status=_QUEUED,
            submitted_at=func.coalesce(_JOBS.c.submitted_at, now),
            claimed_until=None,
            claim_token=None,
            next_poll_at=next_check,
        )
    )
    rows = [{"b_id": item.job_id, "b_runpod_id": runpod_id} for item, runpod_id in queued]
    session.execute(statement, rows)
    events = [
        event_row(item.job_id, "status", _QUEUED, at=at, data={"runpod_job_id": runpod_id})
        for item, runpod_id in queued
    ]
    insert_rows(session, _EVENTS, events)
    for item, _ in queued:
        logger.info("[RUNPOD TASK] job {} pending -> queued", item.job_id)


def _count_outcomes(session: Session, engine: JobEngine, answers: list[Answer]) -> None:
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


def _record_failures(
    session: Session, engine: JobEngine, failed: list[tuple[Prepared, RunPodError]]
) -> None:
    tokens = [item.token for item, _ in failed]
    submissions = {
        submission.token: submission
        for submission in session.scalars(select(Submission).where(Submission.token.in_(tokens)))
    }
    jobs = lock_jobs(session, (item.job_id for item, _ in failed))
    for item, error in failed:
        _record_failure(session, engine, jobs[item.job_id], submissions[item.token], error)


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
