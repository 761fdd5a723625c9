"""The receiver of RunPod's job webhooks: `POST /webhooks/runpod/{token}`."""

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Request

from app.api import examples
from app.api.errors import problem_responses
from app.api.schemas import WebhookReceipt
from app.jobs.options import NO_NUL
from app.jobs.webhooks import WebhookDelivery, WebhookReceiver

router = APIRouter(tags=["webhooks"])


@router.post(
    "/webhooks/runpod/{token}",
    summary="Receive a RunPod job webhook",
    responses=problem_responses(400, 404, 408, 409, 413, 422),
    openapi_extra={
        "requestBody": {"content": {"application/json": {"example": examples.RUNPOD_WEBHOOK}}}
    },
)
async def runpod_webhook(
    request: Request,
    token: Annotated[str, Path(min_length=16, max_length=64, pattern=NO_NUL)],
    payload: Annotated[Any, Body()],
) -> WebhookReceipt:
    """RunPod calls this when a job ends. The token in the path is the job's secret."""
    receiver: WebhookReceiver = request.app.state.webhooks
    outcome = await receiver.receive(WebhookDelivery(token, payload))
    return WebhookReceipt(received=True, changed=outcome.changed)
