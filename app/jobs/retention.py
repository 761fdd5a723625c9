"""Deleting images: by their owner (`DELETE /jobs/{id}`), or after MEDIA_RETENTION_DAYS.

A deleted image keeps its ledger row (state `deleted`, answered 410), and the job keeps its
usage and cost; with `purge_prompt`, its prompt goes too. Objects are content-addressed and
may be shared by another job's image with the same bytes, so an object (and its variants)
is removed only once no image that is not deleted uses its key (see `app.jobs.media_locks`);
then the deleted rows let go of the key. A store outage leaves that for the next sweep.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from loguru import logger
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.core.db import utcnow
from app.jobs.engine import JobEngine
from app.jobs.images import DELETED
from app.jobs.media_locks import hold_media_key
from app.jobs.models import Job, JobImage
from app.jobs.service import add_event, lock_sqlite_writes
from app.jobs.status import JobStatus
from app.media.store import StorageUnavailable

_SWEEP_JOBS = 500
_COLLECT_KEYS = 1000


class JobNotFound(Exception):
    """No such job, or not the caller's."""


class JobNotFinished(Exception):
    """The job is still running: its images are not all there yet."""


@dataclass
class SweepReport:
    expired_jobs: int = 0
    collected: int = 0


def delete_job_media(engine: JobEngine, job_id: str, *, owner: str, purge_prompt: bool) -> None:
    """The owner deletes a finished job's images (and its prompt); raises `JobNotFound` or
    `JobNotFinished`."""
    with engine.db.session() as session:
        lock_sqlite_writes(session)
        job = session.get(Job, job_id, with_for_update=True, populate_existing=True)
        if job is None or job.owner != owner:
            raise JobNotFound(job_id)
        if not JobStatus(job.status).is_terminal:
            raise JobNotFinished(job_id)
        keys = _delete_images(session, job, reason="owner", now=utcnow())
        if purge_prompt and (job.prompt or job.negative_prompt):
            job.prompt, job.negative_prompt = "", None
            add_event(session, job, "prompt_purged")
    collect(engine, keys)


def _delete_images(session: Session, job: Job, *, reason: str, now: datetime) -> list[str]:
    images = session.scalars(
        select(JobImage)
        .where(JobImage.job_id == job.id, JobImage.state != DELETED)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).all()
    for image in images:
        image.state, image.deleted_at = DELETED, now
        # The worker's link may still serve the bytes: forget it.
        image.source_url, image.next_attempt_at = None, None
    if images:
        add_event(session, job, "images_deleted", data={"images": len(images), "by": reason})
    return [image.storage_key for image in images if image.storage_key]


def collect(engine: JobEngine, keys: list[str]) -> int:
    """Remove the objects no image that is not deleted uses; returns how many went."""
    removed = 0
    for key in sorted(set(keys)):
        try:
            with engine.db.session() as session:
                removed += _collect_one(engine, session, key)
        except StorageUnavailable as error:
            logger.warning("[MEDIA] {} kept for the next sweep: {}", key, error)
            break
    return removed


def _collect_one(engine: JobEngine, session: Session, key: str) -> int:
    hold_media_key(session, key, exclusive=True)
    in_use = session.scalar(
        select(func.count())
        .select_from(JobImage)
        .where(JobImage.storage_key == key, JobImage.state != DELETED)
    )
    if not in_use:
        sha256 = key.rsplit("/", 1)[-1].split(".", 1)[0]
        engine.store.delete_with_variants(key, sha256)
    session.execute(
        update(JobImage)
        .where(JobImage.storage_key == key, JobImage.state == DELETED)
        .values(storage_key=None)
        .execution_options(synchronize_session=False)
    )
    return 0 if in_use else 1


def sweep(engine: JobEngine, *, now: datetime | None = None) -> SweepReport:
    """Delete the images of jobs finished more than MEDIA_RETENTION_DAYS ago, and collect
    objects a store outage left behind."""
    now = now or utcnow()
    report = SweepReport()
    keys: list[str] = []
    days = engine.settings.media_retention_days
    if days is not None:
        cutoff = now - timedelta(days=days)
        with engine.db.session() as session:
            lock_sqlite_writes(session)
            expired = session.scalars(
                select(Job)
                .where(Job.finished_at < cutoff)
                .where(Job.id.in_(select(JobImage.job_id).where(JobImage.state != DELETED)))
                .limit(_SWEEP_JOBS)
                .with_for_update()
            ).all()
            for job in expired:
                keys += _delete_images(session, job, reason="retention", now=now)
            report.expired_jobs = len(expired)
    with engine.db.session() as session:
        leftover = session.scalars(
            select(JobImage.storage_key)
            .where(JobImage.state == DELETED, JobImage.storage_key.is_not(None))
            .distinct()
            .limit(_COLLECT_KEYS)
        )
        keys += [key for key in leftover if key]
    report.collected = collect(engine, keys)
    if report.expired_jobs or report.collected:
        logger.info("[MEDIA] retention sweep: {}", report)
    return report
