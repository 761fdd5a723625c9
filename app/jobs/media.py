"""Download result images from workers' URLs into the media store, with recorded retries."""

import asyncio
from datetime import timedelta

import httpx
from loguru import logger
from sqlalchemy import select

from app.core.db import utcnow
from app.jobs.engine import JobEngine
from app.jobs.models import JobImage
from app.jobs.results import record_stored
from app.media.store import MediaError

MAX_IMAGE_BYTES = 50 * 1024 * 1024
_BATCH = 100
_CONCURRENCY = 16


async def store_due_images(engine: JobEngine, job_ids: list[str] | None = None) -> int:
    """Fetch every pending image whose attempt is due (of these jobs, or of all); returns
    how many were tried."""
    query = select(JobImage.id, JobImage.source_url).where(
        JobImage.state == "pending", JobImage.next_attempt_at <= utcnow()
    )
    if job_ids is not None:
        query = query.where(JobImage.job_id.in_(job_ids))

    def due_images() -> list[tuple[str, str | None]]:
        with engine.db.session() as session:
            return list(session.execute(query.limit(_BATCH)).tuples())

    due = await asyncio.to_thread(due_images)  # ledger work off the event loop
    if not due:
        return 0
    limit = asyncio.Semaphore(_CONCURRENCY)

    async def fetch(url: str | None) -> bytes | str:
        async with limit:
            return await _download(engine.http, url)

    results = await asyncio.gather(*(fetch(url) for _, url in due))
    await asyncio.to_thread(_record_results, engine, due, results)
    return len(due)


def _record_results(
    engine: JobEngine, due: list[tuple[str, str | None]], results: list[bytes | str]
) -> None:
    with engine.db.session() as session:
        for (image_id, _), result in zip(due, results, strict=True):
            image = session.get_one(JobImage, image_id)
            if image.state != "pending":
                continue
            image.download_attempts += 1
            if isinstance(result, bytes):
                try:
                    record_stored(image, engine.store.put(result))
                    continue
                except MediaError as error:
                    result = str(error)
            _record_attempt_failure(engine, image, result)


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


async def _download(http: httpx.AsyncClient, url: str | None) -> bytes | str:
    """The image bytes, or why they could not be had."""
    if not url:
        return "no source URL"
    try:
        async with http.stream("GET", url) as response:
            if response.status_code != 200:
                return f"download answered HTTP {response.status_code}"
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > MAX_IMAGE_BYTES:
                    return f"image larger than {MAX_IMAGE_BYTES} bytes"
                chunks.append(chunk)
            return b"".join(chunks)
    except httpx.HTTPError as error:
        return f"download failed: {type(error).__name__}"
