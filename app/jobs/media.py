"""Fetch result images from workers' URLs into the media store, with recorded retries.

A download streams into an `IncomingMedia` spool (hashed on the way), which the store then
streams on (to S3 in parts). An image a worker uploaded to our own bucket (worker-sdxl and
worker-comfyui with BUCKET_ENDPOINT_URL) is read there once to hash and check it, copied to
its content key server-side, and the worker's object is deleted. A store outage does not use
up a download attempt: the image waits for the store, with backoff.
"""

import asyncio
from dataclasses import dataclass
from datetime import timedelta
from functools import partial

import httpx
from loguru import logger
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.batching import GroupRunner
from app.core.db import utcnow
from app.core.tracing import job_span
from app.jobs.engine import JobEngine
from app.jobs.media_locks import hold_media_keys
from app.jobs.models import Job, JobImage
from app.jobs.results import record_stored
from app.jobs.service import lock_sqlite_writes
from app.media.s3 import S3Store
from app.media.store import IncomingMedia, MediaError, StorageUnavailable

_BATCH = 100
STORE_RETRY_CAP_S = 60.0
# A due image: its id, source URL, job and the job's trace (`app.core.tracing`).
_Due = tuple[str, str | None, str, str | None]


@dataclass
class Fetched:
    """One download: the spooled bytes, or why there are none."""

    incoming: IncomingMedia | None = None
    error: str | None = None
    # The key of the worker's object in our bucket, when it came from there.
    bucket_key: str | None = None

    def close(self) -> None:
        if self.incoming is not None:
            self.incoming.close()


async def store_images_of(engine: JobEngine, job_ids: list[str]) -> None:
    """Store the due images of these jobs. The lists handed over while a pass runs share the
    next pass: under load, one query and one transaction serve many hand-overs (most carry a
    single job: a webhook's)."""
    if engine.image_passes is None:
        engine.image_passes = GroupRunner(partial(_store_pass, engine))
    await engine.image_passes.run(job_ids)


async def _store_pass(engine: JobEngine, handed_over: list[list[str]]) -> list[None]:
    job_ids = sorted({job_id for group in handed_over for job_id in group})
    while await store_due_images(engine, job_ids) == _BATCH:
        pass  # a full batch: more may be due
    return [None] * len(handed_over)


async def store_due_images(engine: JobEngine, job_ids: list[str] | None = None) -> int:
    """Fetch every pending image whose attempt is due (of these jobs, or of all); returns
    how many were tried."""
    query = (
        select(JobImage.id, JobImage.source_url, JobImage.job_id, Job.traceparent)
        .join(Job)
        .where(JobImage.state == "pending", JobImage.next_attempt_at <= utcnow())
    )
    if job_ids is not None:
        query = query.where(JobImage.job_id.in_(job_ids))

    def due_images() -> list[_Due]:
        with engine.db.session() as session:
            return list(session.execute(query.limit(_BATCH)).tuples())

    due = await asyncio.to_thread(due_images)  # ledger work off the event loop
    if not due:
        return 0

    async def fetch(url: str | None, job_id: str, traceparent: str | None) -> Fetched:
        async with engine.download_slots:
            with job_span("podrelay.store_image", job_id, traceparent):
                return await _fetch(engine, url)

    tasks = [asyncio.ensure_future(fetch(url, job, trace)) for _, url, job, trace in due]
    try:
        fetched = await asyncio.gather(*tasks)
    except BaseException:  # cancelled: close what did arrive
        for task in tasks:
            if task.done() and not task.cancelled() and task.exception() is None:
                task.result().close()
        raise
    try:  # the spools are closed whatever happens
        adopted = await asyncio.to_thread(_record_results, engine, due, fetched)
    finally:
        for item in fetched:
            item.close()
    if adopted:
        await asyncio.to_thread(_delete_worker_objects, engine, adopted)
    return len(due)


async def _fetch(engine: JobEngine, url: str | None) -> Fetched:
    store = engine.store
    bucket_key = store.object_at(url) if url and isinstance(store, S3Store) else None
    if isinstance(store, S3Store) and bucket_key is not None:
        try:
            incoming = await asyncio.to_thread(store.fetch_object, bucket_key)
            return Fetched(incoming=incoming, bucket_key=bucket_key)
        except (FileNotFoundError, StorageUnavailable, MediaError) as error:
            # Not readable with our credentials: the URL carries its own.
            logger.info("[RUNPOD TASK] worker object {} not copied: {}", bucket_key, error)
    return await _download(engine.http, url)


async def _download(http: httpx.AsyncClient, url: str | None) -> Fetched:
    if not url:
        return Fetched(error="no source URL")
    incoming = IncomingMedia()
    try:
        async with http.stream("GET", url) as response:
            if response.status_code != 200:
                error = f"download answered HTTP {response.status_code}"
            else:
                async for chunk in response.aiter_bytes():
                    incoming.write(chunk)
                return Fetched(incoming=incoming)
    except MediaError as failure:
        error = str(failure)
    except httpx.HTTPError as failure:
        error = f"download failed: {type(failure).__name__}"
    except BaseException:  # cancelled (the process stopping): no spool left behind
        incoming.close()
        raise
    incoming.close()
    return Fetched(error=error)


def _record_results(engine: JobEngine, due: list[_Due], fetched: list[Fetched]) -> list[str]:
    """Store and record each download; returns the worker objects copied (to delete)."""
    adopted: list[str] = []
    keys = [key for item in fetched if (key := _checked_key(item)) is not None]
    with engine.db.session() as session:
        # Locked, with one query each: the images (a deletion of their job's images waits,
        # or is seen), then their objects' keys (`app.jobs.media_locks`).
        images = _lock_images(session, [image_id for image_id, *_ in due])
        hold_media_keys(session, keys)
        for (image_id, *_), item in zip(due, fetched, strict=True):
            image = images.get(image_id)
            if image is None or image.state != "pending":
                continue
            try:
                _store(engine, image, item)
            except StorageUnavailable as error:
                _wait_for_store(engine, image, str(error))
                continue
            except MediaError as error:
                item.error = str(error)
            if image.state == "stored":
                if item.bucket_key is not None:
                    adopted.append(item.bucket_key)
                continue
            image.download_attempts += 1
            _record_attempt_failure(engine, image, item.error or "not stored")
    return adopted


def _checked_key(item: Fetched) -> str | None:
    """The content key of a download that is an image we keep; else None, with the reason."""
    if item.incoming is None:
        return None
    try:
        return (item.incoming.media or item.incoming.finish()).key
    except MediaError as error:
        item.error = str(error)
        item.close()
        item.incoming = None
        return None


def _lock_images(session: Session, image_ids: list[str]) -> dict[str, JobImage]:
    lock_sqlite_writes(session)
    query = (
        select(JobImage)
        .where(JobImage.id.in_(image_ids))
        .order_by(JobImage.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return {image.id: image for image in session.scalars(query)}


def _store(engine: JobEngine, image: JobImage, item: Fetched) -> None:
    if item.incoming is None:
        return
    media = item.incoming.checked()
    store = engine.store
    if item.bucket_key is not None and isinstance(store, S3Store):
        store.copy_within(item.bucket_key, item.incoming)
    else:
        store.put(item.incoming)
    image.download_attempts += 1
    record_stored(image, media)


def _wait_for_store(engine: JobEngine, image: JobImage, reason: str) -> None:
    """Try again later: sooner after a short outage, at most every `STORE_RETRY_CAP_S`."""
    waited = (utcnow() - image.created_at).total_seconds()
    delay = min(max(engine.settings.image_download_retry_base, waited / 4), STORE_RETRY_CAP_S)
    image.error = reason
    image.next_attempt_at = utcnow() + timedelta(seconds=delay)
    logger.warning(
        "[RUNPOD TASK] image {} waits for the media store ({:.0f} s): {}", image.id, delay, reason
    )


def _record_attempt_failure(engine: JobEngine, image: JobImage, reason: str) -> None:
    settings = engine.settings
    image.error = reason
    if image.download_attempts >= settings.image_download_attempts:
        image.state, image.next_attempt_at = "failed", None
        logger.error("[RUNPOD TASK] image {} of job {} lost: {}", image.id, image.job_id, reason)
        return
    delay = settings.image_download_retry_base * 2 ** (image.download_attempts - 1)
    image.next_attempt_at = utcnow() + timedelta(seconds=delay)
    logger.warning(
        "[RUNPOD TASK] image {} download failed, retry in {}s: {}", image.id, delay, reason
    )


def _delete_worker_objects(engine: JobEngine, keys: list[str]) -> None:
    """The worker's copies in our bucket, now that ours are stored (else deleting a job
    would leave its images there)."""
    store = engine.store
    if not isinstance(store, S3Store):
        return
    for key in keys:
        try:
            store.delete_object(key)
        except (StorageUnavailable, FileNotFoundError) as error:
            logger.warning("[RUNPOD TASK] worker object {} not deleted: {}", key, error)
