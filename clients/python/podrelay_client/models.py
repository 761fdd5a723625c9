"""The API's resources as typed models.

Each model is one schema of Podrelay's OpenAPI document (`SCHEMAS` names them), and the
project's tests fail when a field, its type or whether it may be null differs from the
document. Fields the API adds later are ignored, so an older client keeps working.
"""

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal, TypedDict

from pydantic import BaseModel, ConfigDict


class JobStatus(StrEnum):
    PENDING = "pending"
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"

    @property
    def is_terminal(self) -> bool:
        """A job in a terminal status never changes again."""
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset(
    {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.TIMED_OUT}
)


class GenerationOptions(TypedDict, total=False):
    """The options of `generate` and `batch` (the API's defaults apply to those left out)."""

    negative_prompt: str | None
    width: int  # 256 to 2048, a multiple of 8
    height: int
    num_inference_steps: int
    guidance_scale: float
    scheduler: str  # DDIM, PNDM, KLMS, K_EULER, ...
    seed: int | None
    num_images: int
    return_type: Literal["url", "base64"]
    add_default_prompts: bool
    timeout: float | None  # seconds before the job is cancelled
    webhook_url: str | None  # Podrelay POSTs a signed event there when the job ends
    model: str | None  # a route of `GET /models`; unset: the default route
    priority: Literal["high", "normal", "low"]  # up to the key's maximum


class Resource(BaseModel):
    model_config = ConfigDict(frozen=True)


class Image(Resource):
    id: str
    url: str  # a path on the API: `Podrelay.download` fetches it with the API key
    signed_url: str  # the same for anyone with this URL, until `signed_url_expires_at`
    signed_url_expires_at: datetime
    state: Literal["pending", "stored", "failed", "deleted"]
    width: int | None
    height: int | None
    mime_type: str | None
    size_bytes: int | None
    sha256: str | None
    seed: int | None


class JobError(Resource):
    code: str
    message: str | None


class Timings(Resource):
    created_at: datetime
    submitted_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    deadline_at: datetime
    delay_ms: int | None
    execution_ms: int | None


class Cost(Resource):
    gpu_seconds: float | None
    estimated_usd: float | None


class QueuePlace(Resource):
    """Where a waiting job stands, and when it should be done."""

    podrelay_position: int | None
    runpod_position: int | None
    eta_s: float | None


class Links(Resource):
    status: str
    events: str
    cancel: str


class WebhookAttempt(Resource):
    at: datetime
    status_code: int | None
    error: str | None
    duration_ms: int


class WebhookDelivery(Resource):
    id: str
    event: str
    state: Literal["pending", "delivered", "failed"]
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: datetime | None
    created_at: datetime
    delivered_at: datetime | None
    attempt_log: list[WebhookAttempt]


class Job(Resource):
    id: str
    object: Literal["job"] = "job"
    status: JobStatus
    batch_id: str | None
    prompt: str
    negative_prompt: str | None
    params: dict[str, Any]
    progress: Any = None
    queue_position: int | None
    queue: QueuePlace | None = None
    route: str = "default"
    endpoint: str | None = None
    priority: Literal["high", "normal", "low"] = "normal"
    attempts: int
    error: JobError | None
    timings: Timings
    cost: Cost
    images: list[Image]
    webhook_url: str | None
    webhook_deliveries: list[WebhookDelivery] = []
    links: Links
    replayed: bool = False
    trace_id: str | None = None

    @property
    def settled(self) -> bool:
        """Terminal, and no image still on its way into Podrelay's store."""
        return self.status.is_terminal and all(image.state != "pending" for image in self.images)


class Batch(Resource):
    id: str
    object: Literal["batch"] = "batch"
    created_at: datetime
    size: int
    counts: dict[str, int]
    done: bool
    jobs: list[Job]
    webhook_deliveries: list[WebhookDelivery] = []
    replayed: bool = False


class JobPage(Resource):
    items: list[Job]
    next_cursor: str | None


class EventImage(Resource):
    id: str
    url: str
    signed_url: str
    signed_url_expires_at: datetime
    state: Literal["pending", "stored", "failed", "deleted"]


class JobEvent(Resource):
    """One event of a job's stream (`Podrelay.events`)."""

    id: int
    kind: str
    status: JobStatus | None
    message: str | None
    at: datetime
    images: list[EventImage] | None = None  # on the event that completes the job


class UsageDay(Resource):
    day: str
    jobs: int
    completed: int
    images: int
    gpu_seconds: float
    estimated_usd: float


class Budget(Resource):
    """A daily or monthly budget: spent (finished jobs, plus unfinished ones' estimates) and
    what remains until `resets_at`."""

    period: Literal["daily", "monthly"]
    budget_usd: float
    spent_usd: float
    remaining_usd: float
    resets_at: datetime


class Usage(Resource):
    days: list[UsageDay]
    gpu_price_per_second: float
    job_estimate_usd: float  # what a new job counts against the budgets
    budgets: list[Budget]


class SessionToken(Resource):
    """A token for one end user of your app (`Podrelay.session_token`): hand `token` to their
    browser, which sends it as its API key until `expires_at`."""

    token: str
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 - the scheme, no secret
    expires_at: datetime
    expires_in: int
    owner: str
    scopes: list[str]  # jobs:create, jobs:read, images:read
    origins: list[str]


class Workers(Resource):
    """RunPod's worker counts at the endpoint's last /health (None: never checked)."""

    idle: int | None
    ready: int | None
    running: int | None
    initializing: int | None
    throttled: int | None
    unhealthy: int | None


class RunPodJobs(Resource):
    in_queue: int | None
    in_progress: int | None


class Bounds(Resource):
    max_width: int
    max_height: int
    max_steps: int
    max_images: int


class EndpointHealth(Resource):
    """A RunPod endpoint of a model, as Podrelay's dispatchers last saw it."""

    id: str
    weight: float
    max_in_flight: int | None  # None: never checked
    workers: Workers
    runpod_jobs: RunPodJobs
    queue_delay_p50_ms: int | None  # medians of its jobs of the last 15 minutes
    execution_p50_ms: int | None
    circuit: Literal["closed", "open", "half_open"]  # open: out of rotation until retry_at
    circuit_reason: str | None
    circuit_since: datetime | None
    retry_at: datetime | None
    trips: int
    checked_at: datetime | None
    error: str | None  # why its last /health failed
    queued_jobs: int  # Podrelay's jobs in its queue at RunPod
    running_jobs: int


class Model(Resource):
    """A route: what `model` names in `generate`, and the endpoints that serve it."""

    name: str
    default: bool  # the route of a request that names no model
    kind: Literal["sdxl", "comfyui", "a1111", "flux", "custom"]
    price_per_second: float
    max_queue_delay_s: float
    defaults: dict[str, Any]  # the parameters a request leaves out
    bounds: Bounds
    fallbacks: list[str]
    pending_jobs: int
    waiting_jobs: int
    endpoints: list[EndpointHealth]


class Problem(Resource):
    """An error answer (`application/problem+json`); `code` is stable."""

    type: str = "about:blank"
    title: str
    status: int
    code: str
    detail: str
    retryable: bool = False
    retry_after: float | None = None
    errors: list[dict[str, Any]] | None = None


# The OpenAPI schema each model is.
SCHEMAS: dict[str, type[Resource]] = {
    "ImageOut": Image,
    "ErrorOut": JobError,
    "TimingsOut": Timings,
    "CostOut": Cost,
    "LinksOut": Links,
    "QueueOut": QueuePlace,
    "EventImageOut": EventImage,
    "WebhookAttemptOut": WebhookAttempt,
    "WebhookDeliveryOut": WebhookDelivery,
    "JobOut": Job,
    "BatchOut": Batch,
    "JobPage": JobPage,
    "JobEventOut": JobEvent,
    "UsageDay": UsageDay,
    "UsageOut": Usage,
    "BudgetOut": Budget,
    "TokenOut": SessionToken,
    "WorkersOut": Workers,
    "RunPodJobsOut": RunPodJobs,
    "BoundsOut": Bounds,
    "EndpointHealthOut": EndpointHealth,
    "ModelOut": Model,
    "Problem": Problem,
}
