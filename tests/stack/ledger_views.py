"""The ledger as a test reads it: jobs with their images, submissions and events, read in one
session into frozen views, and cheap counts for polling."""

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from app.core.db import Database, utcnow
from app.jobs.models import Job, JobEvent, JobImage
from app.jobs.status import TERMINAL

_TERMINAL_VALUES = frozenset(status.value for status in TERMINAL)
# (kind, status, message, data) of one event.
EventView = tuple[str, str | None, str | None, Any]


@dataclass(frozen=True)
class Progress:
    jobs: int
    accepted: int
    terminal: int
    pending_images: int


@dataclass(frozen=True)
class ImageView:
    state: str
    storage_key: str | None
    source_url: str | None


@dataclass(frozen=True)
class SubmissionView:
    token: str
    outcome: str
    runpod_job_id: str | None
    endpoint: str | None = None


@dataclass(frozen=True)
class JobView:
    """A job as the ledger holds it, read in one session."""

    id: str
    status: str
    error_code: str | None
    error_message: str | None
    prompt: str
    runpod_job_id: str | None
    celery_task_id: str | None
    batch_id: str | None
    batch_index: int | None
    attempts: int
    images: tuple[ImageView, ...]
    submissions: tuple[SubmissionView, ...]
    events: tuple[EventView, ...]  # in order

    @property
    def terminal(self) -> bool:
        return self.status in _TERMINAL_VALUES

    @property
    def terminal_events(self) -> list[EventView]:
        return [e for e in self.events if e[0] == "status" and e[1] in _TERMINAL_VALUES]

    @property
    def settled(self) -> bool:
        """Terminal, and no image download still to come."""
        return self.terminal and all(image.state != "pending" for image in self.images)


def _view(job: Job, events: list[JobEvent]) -> JobView:
    return JobView(
        id=job.id,
        status=job.status,
        error_code=job.error_code,
        error_message=job.error_message,
        prompt=job.prompt,
        runpod_job_id=job.runpod_job_id,
        celery_task_id=job.celery_task_id,
        batch_id=job.batch_id,
        batch_index=job.batch_index,
        attempts=job.attempts,
        images=tuple(ImageView(i.state, i.storage_key, i.source_url) for i in job.images),
        submissions=tuple(
            SubmissionView(s.token, s.outcome, s.runpod_job_id, s.endpoint) for s in job.submissions
        ),
        events=tuple((e.kind, e.status, e.message, e.data) for e in events),
    )


class LedgerReader:
    """Read-only queries on one ledger (`db`)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def jobs(self, *, ids: Iterable[str] | None = None) -> list[JobView]:
        query = select(Job).options(selectinload(Job.images), selectinload(Job.submissions))
        if ids is not None:
            query = query.where(Job.id.in_(list(ids)))
        with self.db.session() as session:
            jobs = list(session.scalars(query.order_by(Job.created_at, Job.id)))
            events: dict[str, list[JobEvent]] = {job.id: [] for job in jobs}
            rows = session.scalars(
                select(JobEvent).where(JobEvent.job_id.in_(list(events))).order_by(JobEvent.id)
            )
            for event in rows:
                events[event.job_id].append(event)
            return [_view(job, events[job.id]) for job in jobs]

    def jobs_by_task(self, task_ids: list[str]) -> dict[str, JobView]:
        """The jobs the seed task created, by task id (missing ones are left out)."""
        by_task = {job.celery_task_id: job for job in self.jobs() if job.celery_task_id}
        return {task_id: by_task[task_id] for task_id in task_ids if task_id in by_task}

    def status_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for job in self.jobs():
            counts[job.status] = counts.get(job.status, 0) + 1
        return counts

    def progress(self) -> Progress:
        """Cheap counts for polling (the full `jobs()` view is for assertions)."""
        with self.db.session() as session:

            def count(query: Any) -> int:
                return int(session.scalar(select(func.count()).select_from(query)) or 0)

            return Progress(
                jobs=count(select(Job.id).subquery()),
                accepted=count(select(Job.id).where(Job.runpod_job_id.is_not(None)).subquery()),
                terminal=count(
                    select(Job.id).where(Job.status.in_(list(_TERMINAL_VALUES))).subquery()
                ),
                pending_images=count(
                    select(JobImage.id).where(JobImage.state == "pending").subquery()
                ),
            )

    def claimed(self) -> int:
        """Jobs a tracker holds right now (a lease a killed worker leaves behind)."""
        with self.db.session() as session:
            query = select(func.count()).select_from(Job).where(Job.claimed_until > utcnow())
            return int(session.scalar(query) or 0)
