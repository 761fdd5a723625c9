"""Celery tasks. Thin: they take ids (or the seed's prompt arguments), delegate to
`app.jobs`, and are safe to run twice, which is why those that need it use `acks_late`.

    generate_image_runpod_task.delay(user_prompt="beautiful anime girl, detailed eyes")

creates a job in the ledger (findable by the returned task id) and submits it to RunPod;
the worker slot is free again as soon as RunPod has accepted the job.
"""

from typing import Any, cast

from loguru import logger
from pydantic import ValidationError
from sqlalchemy import CursorResult, Result, func, select, update
from sqlalchemy.orm import Session

from app.accounts.callers import internal_caller
from app.celery_app import celery_app
from app.core.db import database_now
from app.core.errors import PodrelayError
from app.jobs import retention, service
from app.jobs.admission import Accepted, accept_requests
from app.jobs.connection import check_connection
from app.jobs.intake import job_request
from app.jobs.media import store_images_of
from app.jobs.models import Batch, Job, JobImage
from app.jobs.options import PROMPT, GenerationOptions
from app.jobs.status import ACTIVE
from app.jobs.submit import cancel_quietly, submit_job, submit_jobs
from app.jobs.tracking import tick
from app.tasks.runtime import get_engine, run

MAX_BATCH = 10


@celery_app.task(bind=True, acks_late=True)
def generate_image_runpod_task(
    self: Any,
    user_prompt: str,
    negative_prompt: str | None = None,
    params: dict[str, Any] | None = None,
    owner: str = "anonymous",
    timeout: float | None = None,
) -> dict[str, str]:
    """Create a job for one prompt (once per task id) and submit it to RunPod."""
    engine = get_engine()
    with engine.db.session() as session:
        job = service.job_for_task(session, self.request.id)
        if job is not None:
            job_id = job.id
        else:
            accepted = _accept(
                session, owner, [user_prompt], negative_prompt, params, timeout,
                celery_task_id=self.request.id,
            )  # fmt: skip
            job_id = accepted.resource_id
    logger.info("[RUNPOD TASK] task {} -> job {}", self.request.id, job_id)
    run(submit_job(engine, job_id))
    return _summary(job_id)


@celery_app.task(bind=True, acks_late=True)
def generate_image_batch_task(
    self: Any,
    prompts: list[str],
    negative_prompt: str | None = None,
    params: dict[str, Any] | None = None,
    owner: str = "anonymous",
    timeout: float | None = None,
) -> dict[str, Any]:
    """One batch, one job per prompt (up to 10), all submitted to RunPod concurrently."""
    if not 1 <= len(prompts) <= MAX_BATCH:
        raise ValueError(f"a batch holds 1 to {MAX_BATCH} prompts, not {len(prompts)}")
    engine = get_engine()
    batch_id = f"batch_{self.request.id.replace('-', '')[:24]}"
    with engine.db.session() as session:
        batch = session.get(Batch, batch_id)
        if batch is None:
            _accept(session, owner, prompts, negative_prompt, params, timeout, batch_id=batch_id)
            batch = session.get_one(Batch, batch_id)
        job_ids = [job.id for job in batch.jobs]

    run(submit_jobs(engine, job_ids))
    return {"batch_id": batch_id, "jobs": [_summary(job_id) for job_id in job_ids]}


def _accept(
    session: Session,
    owner: str,
    prompts: list[str],
    negative_prompt: str | None,
    params: dict[str, Any] | None,
    timeout: float | None,
    *,
    celery_task_id: str | None = None,
    batch_id: str | None = None,
) -> Accepted:
    """Accept a seed task's request as the API accepts one (`app.jobs.admission`); a request
    the API would refuse fails the task with a ValueError saying why."""
    settings = get_engine().settings
    try:
        options = GenerationOptions.model_validate(
            {**(params or {}), "negative_prompt": negative_prompt, "timeout": timeout}
        )
        request = job_request(
            settings,
            internal_caller(settings, owner),
            [PROMPT.validate_python(prompt) for prompt in prompts],
            options,
            batch=batch_id is not None,
            celery_task_id=celery_task_id,
            batch_id=batch_id,
        )
    except ValidationError as error:  # Celery's JSON results cannot carry pydantic's errors
        raise ValueError(str(error)) from None
    except PodrelayError as refusal:
        raise ValueError(refusal.detail) from None
    outcome = accept_requests(session, settings, [request])[0]
    if isinstance(outcome, PodrelayError):
        raise ValueError(outcome.detail)
    return outcome


@celery_app.task
def test_runpod_connection_task() -> dict[str, Any]:
    """Check the API key, RunPod's /health and the round-trip time."""
    engine = get_engine()
    result = run(check_connection(engine.runpod))
    logger.info("[RUNPOD TASK] connection test: {}", result)
    return result


@celery_app.task(acks_late=True, ignore_result=True)
def store_images_task(job_ids: list[str]) -> None:
    """Download the due images of these jobs."""
    run(store_images_of(get_engine(), job_ids))


@celery_app.task(acks_late=True, ignore_result=True)
def cancel_runpod_job_task(runpod_job_id: str, endpoint_id: str | None = None) -> None:
    """Cancel a RunPod job at its endpoint (the default route's when none is named)."""
    run(cancel_quietly(get_engine(), runpod_job_id, endpoint_id))


@celery_app.task(ignore_result=True)
def track_jobs() -> None:
    """The periodic tracker tick (see `app.jobs.tracking`)."""
    report = run(tick(get_engine()))
    if report is not None and (report.polled or report.timed_out):
        logger.debug("[RUNPOD TASK] tick {}", report)


@celery_app.task(ignore_result=True)
def sweep_media() -> None:
    """Delete expired images (MEDIA_RETENTION_DAYS) and collect unused objects."""
    retention.sweep(get_engine())


@celery_app.task
def reconcile_jobs() -> dict[str, int]:
    """Put back on the tracker's schedule every active job or pending image that fell off it."""
    engine = get_engine()
    with engine.db.session() as session:
        now = database_now(session)
        jobs = _rowcount(
            session.execute(
                update(Job)
                .where(
                    Job.status.in_([status.value for status in ACTIVE]), Job.next_poll_at.is_(None)
                )
                .where((Job.claimed_until.is_(None)) | (Job.claimed_until < now))
                .values(next_poll_at=now)
            )
        )
        images = _rowcount(
            session.execute(
                update(JobImage)
                .where(JobImage.state == "pending", JobImage.next_attempt_at.is_(None))
                .values(next_attempt_at=now)
            )
        )
        active = session.scalar(
            select(func.count()).select_from(Job).where(Job.status.in_([s.value for s in ACTIVE]))
        )
    if jobs or images:
        logger.warning("[RUNPOD TASK] reconciler resumed {} jobs and {} images", jobs, images)
    return {"resumed_jobs": jobs, "resumed_images": images, "active_jobs": active or 0}


def _rowcount(result: Result[Any]) -> int:
    return int(cast(CursorResult[Any], result).rowcount)


def _summary(job_id: str) -> dict[str, str]:
    with get_engine().db.session() as session:
        job = session.get_one(Job, job_id)
        return {"job_id": job.id, "status": job.status}
