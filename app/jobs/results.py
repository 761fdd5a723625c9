"""Apply what RunPod says about a job to the ledger: the one place its readings land."""

from loguru import logger
from sqlalchemy.orm import Session

from app.core.db import utcnow
from app.jobs.media_locks import hold_media_key
from app.jobs.models import Job, JobImage
from app.jobs.service import add_event, move, new_id
from app.jobs.status import JobStatus
from app.media.store import (
    IncomingMedia,
    MediaError,
    MediaStore,
    StorageUnavailable,
    StoredMedia,
)
from app.runpod import JobState, OutputFormatError, describe_job_error, images_of
from app.runpod.models import RunPodStatus

_RAW_ERROR_LIMIT = 4000


def apply_state(
    session: Session, job: Job, state: JobState, *, store: MediaStore, source: str
) -> bool:
    """Record a RunPod reading of the job; returns True when the job's status changed."""
    if JobStatus(job.status).is_terminal:
        return False
    new = JobStatus.from_runpod(state.status)
    if new is None:
        logger.warning("[RUNPOD TASK] job {}: unknown RunPod status {!r}", job.id, state.raw_status)
        add_event(session, job, "unknown_status", message=state.raw_status)
        return False
    if state.delay_time_ms is not None:
        job.delay_ms = state.delay_time_ms
    if state.execution_time_ms is not None:
        job.execution_ms = state.execution_time_ms
    if not new.is_terminal:
        if state.progress is not None:
            job.progress = state.progress
        return move(session, job, new, data={"source": source})
    if new is JobStatus.COMPLETED:
        return _complete(session, job, state, store=store, source=source)
    if state.status is RunPodStatus.FAILED:
        raw = (state.error or "")[:_RAW_ERROR_LIMIT]
        return move(
            session,
            job,
            JobStatus.FAILED,
            error_code="worker_failed",
            message=describe_job_error(state.error),
            data={"source": source, "raw_error": raw},
        )
    code, message = _UNFINISHED[new]
    return move(session, job, new, error_code=code, message=message, data={"source": source})


_UNFINISHED = {
    JobStatus.CANCELLED: ("cancelled_at_runpod", "the job was cancelled at RunPod"),
    JobStatus.TIMED_OUT: ("runpod_timed_out", "RunPod timed the job out"),
}


def _complete(
    session: Session, job: Job, state: JobState, *, store: MediaStore, source: str
) -> bool:
    try:
        images = images_of(state)
    except OutputFormatError as error:
        code = "output_unreadable" if state.has_output else "output_missing"
        return move(session, job, JobStatus.FAILED, error_code=code, message=error.message)
    if not images:
        return move(
            session, job, JobStatus.FAILED, error_code="no_images", message="the job made no images"
        )
    try:
        inline = [store_inline(session, store, image.data) for image in images]
    except StorageUnavailable as error:
        # RunPod keeps the output: the job completes on a later reading, once it is stored.
        logger.warning("[RUNPOD TASK] job {}: images not stored yet: {}", job.id, error)
        return False
    now = utcnow()
    for index, (image, stored) in enumerate(zip(images, inline, strict=True)):
        row = JobImage(
            id=new_id("img"),
            job_id=job.id,
            index=index,
            state="pending",
            source_url=image.url,
            seed=image.seed,
            download_attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
        if isinstance(stored, StoredMedia):
            record_stored(row, stored)
        elif stored is not None:
            row.state, row.error, row.next_attempt_at = "failed", stored, None
        session.add(row)
    return move(session, job, JobStatus.COMPLETED, data={"source": source, "images": len(images)})


def store_inline(
    session: Session, store: MediaStore, data: bytes | None
) -> StoredMedia | str | None:
    """Store an image the output carried inline: what was stored, why not, or None (a URL)."""
    if data is None:
        return None
    try:
        incoming = IncomingMedia.from_bytes(data)
    except MediaError as error:
        return str(error)
    try:
        hold_media_key(session, incoming.checked().key)
        return store.put(incoming)
    finally:
        incoming.close()


def record_stored(row: JobImage, stored: StoredMedia) -> None:
    row.state = "stored"
    row.storage_key = stored.key
    row.sha256 = stored.sha256
    row.mime_type = stored.mime_type
    row.size_bytes = stored.size_bytes
    row.width, row.height = stored.width, stored.height
    row.next_attempt_at = None
    row.error = None
