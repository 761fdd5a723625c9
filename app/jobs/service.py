"""Ledger operations on jobs. Functions flush, never commit: the caller owns the transaction."""

import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from typing import Any

from loguru import logger
from pydantic_core import to_json
from sqlalchemy import (
    JSON,
    Row,
    Select,
    String,
    Table,
    cast,
    column,
    false,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.orm import InstrumentedAttribute, Session

from app.core.db import database_now, utcnow
from app.jobs.models import Batch, Job, JobEvent, Submission
from app.jobs.status import ACTIVE, JobStatus, can_move
from app.notify.deliveries import queue_job_event
from app.scheduler.routes import DEFAULT_ROUTE

_LOCKED_KEY = "podrelay.locked_jobs"
# A submission's outcome until RunPod's answer to its POST /run is recorded.
SENDING = "sending"
# A submission whose RunPod job is being cancelled, or was, so that the job moves to another
# endpoint (`app.jobs.failover`): its CANCELLED readings are the move's, not the job's end.
MOVING, MOVED = "moving", "moved"
_JOBS = Job.metadata.tables[Job.__tablename__]
_EVENTS = JobEvent.metadata.tables[JobEvent.__tablename__]


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def event_row(
    job_id: str,
    kind: str,
    status: str,
    *,
    at: datetime,
    message: str | None = None,
    data: Any = None,
) -> dict[str, Any]:
    """A timeline row, with the job's status after what it records: `add_event` adds one for
    a job, `insert_rows` writes many at once."""
    return {
        "job_id": job_id,
        "kind": kind,
        "status": status,
        "message": message,
        "data": data,
        "at": at,
    }


def add_event(
    session: Session,
    job: Job,
    kind: str,
    *,
    message: str | None = None,
    data: Any = None,
) -> None:
    row = event_row(job.id, kind, job.status, at=utcnow(), message=message, data=data)
    session.add(JobEvent(**row))


@dataclass(frozen=True, slots=True)
class NewJob:
    """A job to record: what was asked for, and for whom."""

    owner: str
    prompt: str
    params: dict[str, Any]  # GenerationParams as JSON values
    timeout_s: float
    negative_prompt: str | None = None
    webhook_url: str | None = None
    batch_id: str | None = None
    batch_index: int | None = None
    celery_task_id: str | None = None
    route: str = DEFAULT_ROUTE
    priority: int = 1  # `Priority.rank`: 0 is dispatched first
    fair_tag: float = 0.0  # its place among its queue's jobs (`app.scheduler.fair`)
    traceparent: str | None = None
    id: str = field(default_factory=lambda: new_id("job"))


@dataclass(frozen=True, slots=True)
class RecordedJob:
    """A job as `record_jobs` recorded it: pending, with the ledger's timestamps."""

    job: NewJob
    created_at: datetime
    deadline_at: datetime


def record_jobs(session: Session, jobs: Sequence[NewJob]) -> list[RecordedJob]:
    """Record new pending jobs and their `created` events: the one way jobs enter the ledger.

    One statement for the jobs and one for their events (`insert_rows`), timed by the
    database's clock as leases are. Nothing comes back from the database that is not known
    before (a job's times are the transaction's clock), so nothing is returned. A dispatcher
    may send the jobs at once (`next_poll_at`, for a pending job, is when it may be sent)."""
    if not jobs:
        return []
    now = database_now(session)
    recorded = [
        RecordedJob(job, created_at=now, deadline_at=now + timedelta(seconds=job.timeout_s))
        for job in jobs
    ]
    insert_rows(
        session,
        _JOBS,
        [
            {
                **{name: getattr(item.job, name) for name in _NEW_JOB_FIELDS},
                "status": JobStatus.PENDING.value,
                "attempts": 0,
                "polls": 0,
                "created_at": now,
                "updated_at": now,
                "deadline_at": item.deadline_at,
                "next_poll_at": now,
            }
            for item in recorded
        ],
    )
    insert_rows(
        session,
        _EVENTS,
        [event_row(job.id, "created", JobStatus.PENDING.value, at=now) for job in jobs],
    )
    return recorded


_NEW_JOB_FIELDS = [item.name for item in fields(NewJob)]


def insert_rows(session: Session, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert rows that all have the same keys, in one statement.

    SQLite takes the Core `INSERT` of many rows. On PostgreSQL the rows travel as one JSON
    document that `json_to_recordset` turns into rows of the table's column types: psycopg's
    `executemany` would send and read back one message per row, in Python, which cost a busy
    API a third of its CPU per submission (`bench.submit`)."""
    if session.get_bind().dialect.name != "postgresql":
        session.execute(insert(table), rows)
        return
    names = list(rows[0])
    # pydantic-core's encoder: the standard library's cost 4% of a submission's CPU.
    document = to_json(rows).decode()
    records = (
        func.json_to_recordset(cast(literal(document, String), JSON))
        .table_valued(*(column(name, table.c[name].type) for name in names))
        .render_derived(name="record", with_types=True)
    )
    session.execute(insert(table).from_select(names, select(*records.c)))


def create_batch(
    session: Session,
    *,
    owner: str,
    size: int,
    batch_id: str | None = None,
    webhook_url: str | None = None,
    created_at: datetime | None = None,
) -> Batch:
    batch = Batch(
        id=batch_id or new_id("batch"),
        owner=owner,
        size=size,
        webhook_url=webhook_url,
        created_at=created_at or utcnow(),
    )
    session.add(batch)
    session.flush()
    return batch


def move(
    session: Session,
    job: Job,
    new: JobStatus,
    *,
    message: str | None = None,
    error_code: str | None = None,
    data: Any = None,
) -> bool:
    """Change the job's status if the step is legal; stale or repeated readings are ignored."""
    current = JobStatus(job.status)
    if current == new or not can_move(current, new):
        return False
    now = database_now(session)  # one clock for every process: queue delays compare them
    job.status = new
    if new is JobStatus.QUEUED:
        job.submitted_at = job.submitted_at or now
    elif new is JobStatus.RUNNING:
        job.started_at = job.started_at or now
    if new.is_terminal:
        job.finished_at = now
        job.next_poll_at = None
        job.progress = None if new is JobStatus.COMPLETED else job.progress
    if error_code is not None:
        job.error_code, job.error_message = error_code, message
    add_event(session, job, "status", message=message, data=data)
    if new.is_terminal and job.webhook_url:
        queue_job_event(session, job)  # the client's webhook, in this same transaction
    logger.info("[RUNPOD TASK] job {} {} -> {}", job.id, current, new)
    return True


def new_submission(session: Session, job: Job) -> Submission:
    submission = Submission(job_id=job.id, token=secrets.token_urlsafe(24), outcome=SENDING)
    session.add(submission)
    job.attempts += 1
    return submission


def claim(session: Session, job_ids: list[str], *, lease_s: float) -> list[Job]:
    """Take the jobs no other tracker holds right now; returns those taken.

    The conditional UPDATE is atomic on SQLite and PostgreSQL alike, so two sweeps or two
    deliveries of the same task never work on one job at the same time.
    """
    if not job_ids:
        return []
    now = database_now(session)
    token = secrets.token_hex(8)
    session.execute(
        update(Job)
        .where(
            Job.id.in_(job_ids),
            Job.status.in_([status.value for status in ACTIVE]),
            or_(Job.claimed_until.is_(None), Job.claimed_until < now),
        )
        .values(claim_token=token, claimed_until=now + timedelta(seconds=lease_s))
        .execution_options(synchronize_session=False)
    )
    return list(session.scalars(select(Job).where(Job.claim_token == token)))


def lock_jobs(session: Session, job_ids: Iterable[str]) -> dict[str, Job]:
    """Lock the jobs' rows until the transaction ends, with one query, in id order (as every
    locking path does, so two never wait on each other); on SQLite, the whole database.
    `locked_job` then finds them without a query. Returns the jobs found, by id."""
    query = _locking(session, job_ids, Job)
    if query is None:
        return {}
    jobs = {job.id: job for job in session.scalars(query.execution_options(populate_existing=True))}
    _locked_ids(session).update(jobs)
    return jobs


def lock_job_rows(
    session: Session, job_ids: Iterable[str], *columns: InstrumentedAttribute[Any]
) -> list[Row[Any]]:
    """`lock_jobs` for a caller that writes with Core statements: the rows' id and `columns`."""
    query = _locking(session, job_ids, Job.id, *columns)
    return [] if query is None else list(session.execute(query))


def _locking(session: Session, job_ids: Iterable[str], *entities: Any) -> Select[Any] | None:
    ids = sorted(set(job_ids))
    if not ids:
        return None
    lock_sqlite_writes(session)
    return select(*entities).where(Job.id.in_(ids)).order_by(Job.id).with_for_update()


def locked_job(session: Session, job_id: str) -> Job:
    """The job, its row locked until the transaction ends (see `lock_jobs`): a webhook and a poll,
    or two polls, that read RunPod's answer for one job apply it one after the other, and the
    later one sees the job as the first left it (terminal, with its result) and changes nothing.
    """
    if job_id in _locked_ids(session):
        return session.get_one(Job, job_id)  # locked by `lock_jobs`: in the identity map
    lock_sqlite_writes(session)
    job = session.get_one(Job, job_id, with_for_update=True, populate_existing=True)
    _locked_ids(session).add(job_id)
    return job


def lock_sqlite_writes(session: Session) -> None:
    """SQLite has no row locks, and reads outside a write transaction, so a job read there can
    be stale by the time it is written. A write that changes nothing takes the database's write
    lock: no other process commits until this transaction ends, and what is read next stays."""
    if session.get_bind().dialect.name == "sqlite":
        session.execute(
            update(Job)
            .where(false())
            .values(id=Job.id)
            .execution_options(synchronize_session=False)
        )


def _locked_ids(session: Session) -> set[str]:
    """The jobs locked in the session's current transaction."""
    transaction = session.get_transaction()
    held: tuple[object, set[str]] | None = session.info.get(_LOCKED_KEY)
    if held is None or held[0] is not transaction:
        held = session.info[_LOCKED_KEY] = (transaction, set())
    return held[1]


def release(job: Job, *, next_check_at: datetime | None) -> None:
    job.claimed_until = None
    job.claim_token = None
    if not JobStatus(job.status).is_terminal:
        job.next_poll_at = next_check_at


def job_for_task(session: Session, celery_task_id: str) -> Job | None:
    """The job a seed-style Celery task created (its task id is kept on the job)."""
    return session.scalar(select(Job).where(Job.celery_task_id == celery_task_id))
