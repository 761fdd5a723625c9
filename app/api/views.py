"""Render ledger rows as API resources (never the ORM objects themselves)."""

from collections import Counter
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import object_session

from app.api.schemas import (
    BatchOut,
    CostOut,
    ErrorOut,
    ImageOut,
    JobOut,
    LinksOut,
    QueueOut,
    TimingsOut,
    WebhookAttemptOut,
    WebhookDeliveryOut,
)
from app.core.config import get_settings
from app.core.tracing import trace_id_of
from app.jobs.models import Batch, Job, JobImage
from app.jobs.service import RecordedJob
from app.jobs.status import JobStatus
from app.media.signing import signed_url
from app.notify.models import WebhookDelivery
from app.scheduler.fair import Priority
from app.scheduler.queue import Place

API_PREFIX = "/api/v1/runpod"


def image_url(image_id: str) -> str:
    return f"{API_PREFIX}/images/{image_id}"


def image_out(image: JobImage) -> ImageOut:
    signed = signed_url(get_settings(), image.id)
    return ImageOut(
        id=image.id,
        url=image_url(image.id),
        signed_url=signed.url,
        signed_url_expires_at=signed.expires_at,
        state=image.state,
        width=image.width,
        height=image.height,
        mime_type=image.mime_type,
        size_bytes=image.size_bytes,
        sha256=image.sha256,
        seed=image.seed,
    )


def webhook_delivery_out(delivery: WebhookDelivery) -> WebhookDeliveryOut:
    log = [WebhookAttemptOut.model_validate(entry) for entry in delivery.attempt_log]
    last = log[-1] if log else None
    return WebhookDeliveryOut(
        id=delivery.id,
        event=delivery.event,
        state=delivery.state,
        attempts=delivery.attempts,
        last_status_code=last.status_code if last else None,
        last_error=last.error if last else None,
        next_attempt_at=delivery.next_attempt_at,
        created_at=delivery.created_at,
        delivered_at=delivery.delivered_at,
        attempt_log=log,
    )


def _webhook_deliveries(row: Job | Batch) -> list[WebhookDeliveryOut]:
    """The row's client webhooks (a batch's own: `batch.completed`), read in its session."""
    session = object_session(row)
    if not row.webhook_url or session is None:
        return []
    query = select(WebhookDelivery).order_by(WebhookDelivery.created_at, WebhookDelivery.id)
    if isinstance(row, Job):
        query = query.where(WebhookDelivery.job_id == row.id)
    else:
        query = query.where(WebhookDelivery.batch_id == row.id, WebhookDelivery.job_id.is_(None))
    return [webhook_delivery_out(delivery) for delivery in session.scalars(query)]


def job_out(
    job: Job,
    *,
    price_per_second: float,
    place: Place | None = None,
    replayed: bool = False,
    fresh: bool = False,
) -> JobOut:
    """`fresh`: the job was created in this request, so it has no images or deliveries to load."""
    gpu_seconds = job.execution_ms / 1000 if job.execution_ms is not None else None
    return JobOut(
        id=job.id,
        status=JobStatus(job.status),
        batch_id=job.batch_id,
        prompt=job.prompt,
        negative_prompt=job.negative_prompt,
        params=job.params,
        progress=job.progress,
        queue_position=_ahead(place),
        queue=QueueOut(
            podrelay_position=place.podrelay, runpod_position=place.runpod, eta_s=place.eta_s
        )
        if place
        else None,
        route=job.route,
        endpoint=job.endpoint,
        priority=Priority.from_rank(job.priority),
        attempts=job.attempts,
        error=ErrorOut(code=job.error_code, message=job.error_message) if job.error_code else None,
        timings=TimingsOut(
            created_at=job.created_at,
            submitted_at=job.submitted_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            deadline_at=job.deadline_at,
            delay_ms=job.delay_ms,
            execution_ms=job.execution_ms,
        ),
        cost=CostOut(
            gpu_seconds=gpu_seconds,
            estimated_usd=round(gpu_seconds * price_per_second, 6) if gpu_seconds else None,
        ),
        images=[] if fresh else [image_out(image) for image in job.images],
        webhook_url=job.webhook_url,
        webhook_deliveries=[] if fresh else _webhook_deliveries(job),
        links=LinksOut(**job_link_paths(job.id)),
        replayed=replayed,
        trace_id=trace_id_of(job.traceparent),
    )


def _ahead(place: Place | None) -> int | None:
    if place is None:
        return None
    return place.podrelay if place.podrelay is not None else place.runpod


def recorded_job_out(recorded: RecordedJob) -> JobOut:
    """A job `record_jobs` has just recorded: pending, nothing run or spent yet."""
    job = recorded.job
    # Validated from plain values in one go: a third cheaper than building the parts as models.
    return JobOut.model_validate(
        {
            "id": job.id,
            "status": JobStatus.PENDING,
            "batch_id": job.batch_id,
            "prompt": job.prompt,
            "negative_prompt": job.negative_prompt,
            "params": job.params,
            "queue_position": None,
            "queue": None,
            "route": job.route,
            "endpoint": None,
            "priority": Priority.from_rank(job.priority),
            "attempts": 0,
            "error": None,
            "timings": {
                "created_at": recorded.created_at,
                "submitted_at": None,
                "started_at": None,
                "finished_at": None,
                "deadline_at": recorded.deadline_at,
                "delay_ms": None,
                "execution_ms": None,
            },
            "cost": {"gpu_seconds": None, "estimated_usd": None},
            "images": [],
            "webhook_url": job.webhook_url,
            "links": job_link_paths(job.id),
            "trace_id": trace_id_of(job.traceparent),
        }
    )


def recorded_batch_out(batch_id: str, jobs: Sequence[RecordedJob]) -> BatchOut:
    """A batch `record_jobs` has just recorded, all its jobs pending."""
    return BatchOut(
        id=batch_id,
        created_at=jobs[0].created_at,
        size=len(jobs),
        counts={JobStatus.PENDING.value: len(jobs)},
        done=False,
        jobs=[recorded_job_out(job) for job in jobs],
    )


def job_link_paths(job_id: str) -> dict[str, str]:
    """The `links` of a job resource."""
    return {
        "status": f"{API_PREFIX}/status/{job_id}",
        "events": f"{API_PREFIX}/jobs/{job_id}/events",
        "cancel": f"{API_PREFIX}/cancel/{job_id}",
    }


def batch_path(batch_id: str) -> str:
    return f"{API_PREFIX}/batches/{batch_id}"


def batch_out(batch: Batch, *, price_per_second: float, replayed: bool = False) -> BatchOut:
    jobs = [job_out(job, price_per_second=price_per_second) for job in batch.jobs]
    counts = Counter(job.status.value for job in jobs)
    return BatchOut(
        id=batch.id,
        created_at=batch.created_at,
        size=batch.size,
        counts=dict(counts),
        done=all(job.status.is_terminal for job in jobs),
        jobs=jobs,
        webhook_deliveries=_webhook_deliveries(batch),
        replayed=replayed,
    )
