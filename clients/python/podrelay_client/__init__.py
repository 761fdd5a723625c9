"""Podrelay's Python client: `Podrelay` (sync) and `AsyncPodrelay`, built on httpx.

from podrelay_client import Podrelay

with Podrelay("http://127.0.0.1:8000", api_key="prk_...") as podrelay:
    job = podrelay.generate("a lighthouse at dusk", width=768, height=768, wait=True)
    podrelay.download(job.images[0], "lighthouse.png")
"""

__version__ = "0.1.0"

from podrelay_client._core import API_PREFIX
from podrelay_client.aio import AsyncPodrelay
from podrelay_client.client import Podrelay
from podrelay_client.errors import (
    ApiConnectionError,
    ApiError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    InvalidApiUrl,
    NotFoundError,
    PermissionDeniedError,
    PodrelayError,
    RateLimitError,
    ServerError,
    UnprocessableError,
    WaitTimeout,
    WebhookVerificationError,
)
from podrelay_client.models import (
    Batch,
    Budget,
    EndpointHealth,
    EventImage,
    GenerationOptions,
    Image,
    Job,
    JobEvent,
    JobPage,
    JobStatus,
    Model,
    Problem,
    QueuePlace,
    SessionToken,
    Usage,
)
from podrelay_client.webhooks import verify_webhook

__all__ = [
    "API_PREFIX",
    "ApiConnectionError",
    "ApiError",
    "AsyncPodrelay",
    "AuthenticationError",
    "BadRequestError",
    "Batch",
    "Budget",
    "ConflictError",
    "EndpointHealth",
    "EventImage",
    "GenerationOptions",
    "Image",
    "InvalidApiUrl",
    "Job",
    "JobEvent",
    "JobPage",
    "JobStatus",
    "Model",
    "NotFoundError",
    "PermissionDeniedError",
    "Podrelay",
    "PodrelayError",
    "Problem",
    "QueuePlace",
    "RateLimitError",
    "ServerError",
    "SessionToken",
    "UnprocessableError",
    "Usage",
    "WaitTimeout",
    "WebhookVerificationError",
    "__version__",
    "verify_webhook",
]
