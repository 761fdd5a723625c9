"""Client webhooks, queued in the transaction that ends the job and sent by the tracker.

A job with a `webhook_url` gets one delivery when it ends (`job.completed`, `job.failed`,
`job.cancelled`, `job.timed_out`). A batch with a `webhook_url` also gets `batch.completed`
when its last job ends. The row is written in the same transaction as the status change, so
no event is lost, and none is sent for a change that was rolled back.

`deliver_due`, run on every tracker tick, sends what is due. It checks the URL again before
every attempt, since its DNS name may now resolve elsewhere, connects to the address it
checked (`app.notify.urls.pinned`), and signs the request (see `app.notify.signing`). It
does not follow redirects. Any 2xx answer counts as delivered. Anything else is a failed
attempt: it goes into the delivery's `attempt_log` and is retried 10 s later, then the wait
doubles each time up to 1 h, for `client_webhook_attempts` attempts (12 by default, about
3.4 hours). A URL that now resolves to a non-public address is not retried. Delivery is at
least once: a receiver dedupes on the `webhook-id` header.

`job.completed` waits until the job's images are stored (up to `IMAGE_WAIT_S`), so the image
URLs in it work when it arrives. Each image has its API `url` (for the API key) and a
`signed_url` for anyone, valid MEDIA_URL_TTL from the first attempt (fetch the job for fresh
ones).
"""

import asyncio
import functools
import json
import secrets
import socket
import ssl
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from loguru import logger
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.accounts.models import ApiKey
from app.accounts.owners import signing_key_id
from app.core.config import Settings, get_settings
from app.core.db import database_now, utcnow
from app.jobs.engine import JobEngine
from app.jobs.models import Batch, Job, JobImage
from app.jobs.status import JobStatus
from app.media.signing import signed_url
from app.notify.models import WebhookDelivery
from app.notify.signing import signed_headers
from app.notify.urls import UnsafeWebhookUrl, check_webhook_url, pinned

JOB_EVENTS = {
    JobStatus.COMPLETED: "job.completed",
    JobStatus.FAILED: "job.failed",
    JobStatus.CANCELLED: "job.cancelled",
    JobStatus.TIMED_OUT: "job.timed_out",
}
BATCH_COMPLETED = "batch.completed"
API_PREFIX = "/api/v1/runpod"  # as `app.api.views.API_PREFIX`

SEND_TIMEOUT_S = 10.0
RETRY_BASE_S = 10.0
RETRY_CAP_S = 3600.0
# A claimed delivery is not taken again until then (longer than any one attempt).
LEASE_S = 60.0
# How long `job.completed` waits for the job's images to be stored, and how often it checks.
IMAGE_WAIT_S = 600.0
IMAGE_RECHECK_S = 2.0
USER_AGENT = "Podrelay-Webhooks/1"
_CONCURRENCY = 16
_ERROR_LIMIT = 300


def new_delivery_id() -> str:
    return f"msg_{secrets.token_hex(12)}"


def retry_delay(attempts: int) -> float:
    """Seconds to wait after the `attempts`-th failed attempt."""
    return min(RETRY_BASE_S * 2.0 ** max(attempts - 1, 0), RETRY_CAP_S)


# --- queueing (inside the status change's transaction) -------------------------------------


def queue_job_event(session: Session, job: Job) -> None:
    """Queue the job's terminal event, and `batch.completed` if it was the batch's last job.

    `app.jobs.service.move` calls it after a terminal transition of a job with a webhook_url.
    """
    event = JOB_EVENTS.get(JobStatus(job.status))
    if event is None or not job.webhook_url:
        return
    now = utcnow()
    session.add(
        _delivery(
            owner=job.owner,
            job_id=job.id,
            batch_id=job.batch_id,
            event=event,
            url=job.webhook_url,
            payload=job_payload(session, job, event),
            now=now,
        )
    )
    if job.batch_id is not None:
        _queue_batch_if_done(session, job, now)


def _delivery(
    *,
    owner: str,
    job_id: str | None,
    batch_id: str | None,
    event: str,
    url: str,
    payload: dict[str, Any],
    now: datetime,
) -> WebhookDelivery:
    return WebhookDelivery(
        id=new_delivery_id(),
        owner=owner,
        job_id=job_id,
        batch_id=batch_id,
        event=event,
        url=url,
        payload=payload,
        state="pending",
        attempts=0,
        attempt_log=[],
        next_attempt_at=now,
        created_at=now,
    )


def queue_account_event(
    session: Session, *, owner: str, url: str, event: str, data: dict[str, Any]
) -> None:
    """Queue an event about an owner's account (`budget.threshold`), in the caller's
    transaction, signed like the owner's job webhooks."""
    now = utcnow()
    payload = {"type": event, "timestamp": _iso(now), "data": data}
    session.add(
        _delivery(
            owner=owner, job_id=None, batch_id=None, event=event, url=url, payload=payload, now=now
        )
    )


def _queue_batch_if_done(session: Session, job: Job, now: datetime) -> None:
    # Lock the batch row so the batch's jobs finish one at a time here: of two jobs ending
    # concurrently, the second to take the lock sees the first as finished. On PostgreSQL each
    # statement of a READ COMMITTED transaction sees the latest commits. SQLite runs one
    # writer at a time, and this runs after the job's status is flushed.
    batch = session.execute(
        select(Batch.id, Batch.owner, Batch.size, Batch.webhook_url)
        .where(Batch.id == job.batch_id)
        .with_for_update()
    ).one_or_none()
    if batch is None or not batch.webhook_url:
        return
    rows = session.execute(select(Job.id, Job.status).where(Job.batch_id == batch.id)).all()
    statuses = {job_id: JobStatus(status) for job_id, status in rows}
    statuses[job.id] = JobStatus(job.status)
    if not all(status.is_terminal for status in statuses.values()):
        return
    already = session.scalar(
        select(WebhookDelivery.id).where(
            WebhookDelivery.batch_id == batch.id, WebhookDelivery.event == BATCH_COMPLETED
        )
    )
    if already is not None:
        return
    counts: dict[str, int] = {}
    for status in statuses.values():
        counts[status.value] = counts.get(status.value, 0) + 1
    payload = {
        "type": BATCH_COMPLETED,
        "timestamp": _iso(now),
        "data": {
            "id": batch.id,
            "object": "batch",
            "size": batch.size,
            "counts": dict(sorted(counts.items())),
            "jobs": [
                {"id": job_id, "status": status.value}
                for job_id, status in sorted(statuses.items())
            ],
            "links": {"batch": f"{API_PREFIX}/batches/{batch.id}"},
        },
    }
    session.add(
        _delivery(
            owner=batch.owner,
            job_id=None,
            batch_id=batch.id,
            event=BATCH_COMPLETED,
            url=batch.webhook_url,
            payload=payload,
            now=now,
        )
    )


def job_payload(session: Session, job: Job, event: str) -> dict[str, Any]:
    """The body of a job event: a compact summary of the job (not its prompt or params)."""
    images = session.scalars(
        select(JobImage).where(JobImage.job_id == job.id).order_by(JobImage.index)
    ).all()
    settings = get_settings()
    return {
        "type": event,
        "timestamp": _iso(job.finished_at or utcnow()),
        "data": {
            "id": job.id,
            "object": "job",
            "status": JobStatus(job.status).value,
            "batch_id": job.batch_id,
            "error": (
                {"code": job.error_code, "message": job.error_message} if job.error_code else None
            ),
            "images": [_image(image, settings) for image in images],
            "timings": {
                "created_at": _iso(job.created_at),
                "submitted_at": _iso(job.submitted_at),
                "started_at": _iso(job.started_at),
                "finished_at": _iso(job.finished_at),
                "delay_ms": job.delay_ms,
                "execution_ms": job.execution_ms,
            },
            "links": {"status": f"{API_PREFIX}/status/{job.id}"},
        },
    }


def _image(image: JobImage, settings: Settings) -> dict[str, Any]:
    signed = signed_url(settings, image.id)
    return {
        "id": image.id,
        "url": f"{API_PREFIX}/images/{image.id}",
        "signed_url": signed.url,
        "signed_url_expires_at": _iso(signed.expires_at),
        "state": image.state,
        "seed": image.seed,
    }


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


# --- sending (the tracker) ------------------------------------------------------------------


@dataclass
class _Outgoing:
    id: str
    event: str
    url: str
    body: bytes
    secret: str | None = field(repr=False)


@dataclass
class _Attempt:
    at: datetime
    duration_ms: int
    status_code: int | None = None
    error: str | None = None
    ok: bool = False
    # Not worth retrying: the URL is refused, or there is no secret to sign with.
    final: bool = False

    def entry(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "status_code": self.status_code,
            "error": self.error,
            "duration_ms": self.duration_ms,
        }


async def deliver_due(engine: JobEngine, limit: int = 50) -> int:
    """Send up to `limit` due deliveries concurrently and record each attempt; returns how
    many were attempted."""
    outgoing = await asyncio.to_thread(_claim_due, engine, limit)  # off the event loop
    if not outgoing:
        return 0
    allow_private = engine.settings.private_webhook_urls_allowed
    gate = asyncio.Semaphore(_CONCURRENCY)
    timeout = httpx.Timeout(SEND_TIMEOUT_S)
    async with httpx.AsyncClient(timeout=timeout, follow_redirects=False, verify=_tls()) as client:

        async def attempt(item: _Outgoing) -> _Attempt:
            async with gate:
                try:
                    return await _attempt(client, item, allow_private=allow_private)
                except Exception as error:  # noqa: BLE001 - still one attempt, recorded
                    # Only the type: a traceback could show the secret among the locals.
                    return _Attempt(at=utcnow(), duration_ms=0, error=type(error).__name__)

        results = await asyncio.gather(*(attempt(item) for item in outgoing))
    await asyncio.to_thread(_record, engine, outgoing, results)
    return len(outgoing)


@functools.cache
def _tls() -> ssl.SSLContext:
    """httpx's default certificate checks, built once: loading the CA bundle is slow."""
    return httpx.create_ssl_context()


def _claim_due(engine: JobEngine, limit: int) -> list[_Outgoing]:
    """Take the due deliveries (no other tracker sends them until the lease ends) and
    prepare their bodies; a `job.completed` whose images are still coming waits."""
    with engine.db.session() as session:
        now = database_now(session)
        due = session.scalars(
            select(WebhookDelivery.id)
            .where(WebhookDelivery.state == "pending", WebhookDelivery.next_attempt_at <= now)
            .order_by(WebhookDelivery.next_attempt_at)
            .limit(limit)
        ).all()
        if not due:
            return []
        claimed = session.scalars(
            update(WebhookDelivery)
            .where(
                WebhookDelivery.id.in_(due),
                WebhookDelivery.state == "pending",
                WebhookDelivery.next_attempt_at <= now,
            )
            .values(next_attempt_at=now + timedelta(seconds=LEASE_S))
            .returning(WebhookDelivery.id)
            .execution_options(synchronize_session=False)
        ).all()
        rows = session.scalars(
            select(WebhookDelivery)
            .where(WebhookDelivery.id.in_(claimed))
            .order_by(WebhookDelivery.created_at)
        ).all()
        secrets_by_owner = _secrets(engine, session, {row.owner for row in rows})
        outgoing = []
        for row in rows:
            if row.attempts == 0 and row.event == JOB_EVENTS[JobStatus.COMPLETED] and row.job_id:
                if _images_pending(session, row.job_id) and now - row.created_at < timedelta(
                    seconds=IMAGE_WAIT_S
                ):
                    row.next_attempt_at = now + timedelta(seconds=IMAGE_RECHECK_S)
                    continue
                # The images' states (and ids) as they are now, fixed from the first attempt on.
                row.payload = job_payload(session, session.get_one(Job, row.job_id), row.event)
            body = json.dumps(row.payload, separators=(",", ":")).encode()
            outgoing.append(
                _Outgoing(
                    id=row.id,
                    event=row.event,
                    url=row.url,
                    body=body,
                    secret=secrets_by_owner.get(row.owner),
                )
            )
        return outgoing


def _secrets(engine: JobEngine, session: Session, owners: set[str]) -> dict[str, str]:
    """Each owner's signing secret: its key's (also for its session tokens' users), else
    WEBHOOK_SIGNING_SECRET (anonymous, JWT users)."""
    key_ids = {owner: signing_key_id(owner) for owner in owners}
    wanted = {key_id for key_id in key_ids.values() if key_id}
    rows = session.execute(select(ApiKey.id, ApiKey.webhook_secret).where(ApiKey.id.in_(wanted)))
    by_key = dict(rows.tuples().all())
    shared = engine.settings.webhook_signing_secret.get_secret_value()
    found = {owner: by_key.get(key_id) if key_id else shared for owner, key_id in key_ids.items()}
    return {owner: secret for owner, secret in found.items() if secret}


def _images_pending(session: Session, job_id: str) -> bool:
    pending = session.scalar(
        select(func.count())
        .select_from(JobImage)
        .where(JobImage.job_id == job_id, JobImage.state == "pending")
    )
    return bool(pending)


async def _attempt(client: httpx.AsyncClient, item: _Outgoing, *, allow_private: bool) -> _Attempt:
    at = utcnow()
    started = time.monotonic()

    def result(**values: Any) -> _Attempt:
        return _Attempt(at=at, duration_ms=int((time.monotonic() - started) * 1000), **values)

    if item.secret is None:
        return result(error="no signing secret for the job's owner", final=True)
    try:
        addresses = await asyncio.to_thread(
            check_webhook_url, item.url, allow_private=allow_private
        )
    except UnsafeWebhookUrl as error:
        # A name that does not resolve may again; one that resolves somewhere private stays out.
        transient = isinstance(error.__cause__, socket.gaierror | UnicodeError)
        return result(error=f"refused: {error}", final=not transient)
    target = pinned(item.url, addresses)
    headers = {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        **target.headers,
        **signed_headers(item.secret, item.id, int(time.time()), item.body),
    }
    try:
        async with (
            asyncio.timeout(SEND_TIMEOUT_S),
            client.stream(
                "POST",
                target.url,
                content=item.body,
                headers=headers,
                extensions=target.extensions,
            ) as response,
        ):
            status = response.status_code  # the body is not read
    except TimeoutError:
        return result(error=f"no answer within {SEND_TIMEOUT_S:g} s")
    except httpx.HTTPError as error:
        return result(error=f"{type(error).__name__}: {error}"[:_ERROR_LIMIT])
    if 200 <= status < 300:
        return result(status_code=status, ok=True)
    if response.is_redirect:
        return result(status_code=status, error=f"HTTP {status}: redirects are not followed")
    return result(status_code=status, error=f"HTTP {status}")


def _record(engine: JobEngine, outgoing: list[_Outgoing], results: list[_Attempt]) -> None:
    max_attempts = engine.settings.client_webhook_attempts
    with engine.db.session() as session:
        for item, attempt in zip(outgoing, results, strict=True):
            row = session.get_one(WebhookDelivery, item.id)
            if row.state != "pending":
                continue
            row.attempts += 1
            row.attempt_log = [*row.attempt_log, attempt.entry()]
            host = urlsplit(item.url).hostname  # never the whole URL: it may carry a token
            if attempt.ok:
                row.state, row.delivered_at, row.next_attempt_at = "delivered", utcnow(), None
                logger.info(
                    "[WEBHOOK] {} {} delivered to {} ({} ms)",
                    row.id,
                    row.event,
                    host,
                    attempt.duration_ms,
                )
            elif attempt.final or row.attempts >= max_attempts:
                row.state, row.next_attempt_at = "failed", None
                logger.warning(
                    "[WEBHOOK] {} {} to {} failed for good after {} attempt(s): {}",
                    row.id,
                    row.event,
                    host,
                    row.attempts,
                    attempt.error,
                )
            else:
                delay = retry_delay(row.attempts)
                row.next_attempt_at = utcnow() + timedelta(seconds=delay)
                logger.warning(
                    "[WEBHOOK] {} {} to {} failed (attempt {}), retry in {:g} s: {}",
                    row.id,
                    row.event,
                    host,
                    row.attempts,
                    delay,
                    attempt.error,
                )
