"""The receiver of RunPod's job webhooks: `POST /webhooks/runpod/{token}`."""

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Request

from app.api.errors import ApiError, Conflict, NotFound, problem_responses
from app.api.schemas import NO_NUL, WebhookReceipt
from app.jobs.engine import JobEngine
from app.jobs.models import Job
from app.jobs.status import JobStatus
from app.jobs.webhooks import WebhookRejected, receive_runpod_webhook
from app.tasks.runpod_tasks import cancel_runpod_job_task, store_images_task

router = APIRouter(tags=["webhooks"])
_REJECTIONS: dict[int, type[ApiError]] = {404: NotFound, 409: Conflict}


@router.post(
    "/webhooks/runpod/{token}",
    summary="Receive a RunPod job webhook",
    responses=problem_responses(400, 404, 408, 409, 413, 422),
)
def runpod_webhook(
    request: Request,
    token: Annotated[str, Path(min_length=16, max_length=64, pattern=NO_NUL)],
    payload: Annotated[Any, Body()],
) -> WebhookReceipt:
    """RunPod calls this when a job ends. The token in the path is the job's secret."""
    engine: JobEngine = request.app.state.engine
    try:
        with engine.db.session() as session:
            outcome = receive_runpod_webhook(session, token, payload, store=engine.store)
            job = session.get_one(Job, outcome.job_id)
            needs_images = job.status == JobStatus.COMPLETED and any(
                image.state == "pending" for image in job.images
            )
    except WebhookRejected as error:
        rejection = _REJECTIONS.get(error.status_code, ApiError)
        raise rejection(str(error), code="webhook_rejected") from None
    # Enqueued only after the commit above, so the tasks always find what they look for.
    if outcome.changed and needs_images:
        store_images_task.delay(outcome.job_id)
    for runpod_job_id in outcome.cancel_runpod_jobs:
        cancel_runpod_job_task.delay(runpod_job_id)
    return WebhookReceipt(received=True, changed=outcome.changed)
