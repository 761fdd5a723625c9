"""What the REST API accepts and returns. Requests reject unknown fields."""

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field

from app.api import examples
from app.api.account_schemas import BudgetOut
from app.api.model_schemas import ModelOut
from app.jobs.options import NO_NUL, GenerationOptions, Prompt
from app.jobs.status import JobStatus
from app.scheduler.fair import Priority

PathId = Annotated[str, Path(pattern=NO_NUL)]


class GenerateRequest(GenerationOptions):
    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={"examples": [examples.GENERATE_REQUEST]},
    )

    prompt: Prompt


class BatchRequest(GenerationOptions):
    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={"examples": [examples.BATCH_REQUEST]},
    )

    prompts: list[Prompt] = Field(min_length=1, max_length=10)


class ImageOut(BaseModel):
    id: str
    url: str = Field(description="The image on the API, for the owner's API key.")
    signed_url: str = Field(
        description="The image on the API for anyone who has this URL, until "
        "`signed_url_expires_at`: for `<img src>`. Add `&w=256&format=webp` (or `jpeg`) "
        "for a resized copy."
    )
    signed_url_expires_at: datetime
    state: Literal["pending", "stored", "failed", "deleted"]
    width: int | None
    height: int | None
    mime_type: str | None
    size_bytes: int | None
    sha256: str | None
    seed: int | None


class ErrorOut(BaseModel):
    code: str
    message: str | None


class TimingsOut(BaseModel):
    created_at: datetime
    submitted_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    deadline_at: datetime
    delay_ms: int | None = Field(description="Time queued at RunPod before a worker took it.")
    execution_ms: int | None = Field(description="Time a RunPod worker ran it.")


class QueueOut(BaseModel):
    podrelay_position: int | None = Field(description="Jobs ahead of it in Podrelay's queue.")
    runpod_position: int | None = Field(description="Our jobs ahead of it at its endpoint.")
    eta_s: float | None = Field(
        description="Seconds until it should be done, from the endpoints' recent pace."
    )


class CostOut(BaseModel):
    gpu_seconds: float | None
    estimated_usd: float | None


class LinksOut(BaseModel):
    status: str
    events: str
    cancel: str


class WebhookAttemptOut(BaseModel):
    at: datetime
    status_code: int | None
    error: str | None
    duration_ms: int


class WebhookDeliveryOut(BaseModel):
    id: str = Field(description="Sent as the `webhook-id` header, the same on every retry.")
    event: str
    state: Literal["pending", "delivered", "failed"]
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: datetime | None
    created_at: datetime
    delivered_at: datetime | None
    attempt_log: list[WebhookAttemptOut]


class JobOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [examples.COMPLETED_JOB, examples.PENDING_JOB]}
    )

    id: str
    object: Literal["job"] = "job"
    status: JobStatus
    batch_id: str | None
    prompt: str
    negative_prompt: str | None
    params: dict[str, Any]
    progress: Any = None
    queue_position: int | None = Field(
        description="Jobs ahead of this one while it waits: in Podrelay's queue while pending, "
        "at its RunPod endpoint while queued (null in the 202, which does not count them)."
    )
    queue: QueueOut | None = Field(
        default=None, description="Where it waits and when it should be done, while it waits."
    )
    route: str = Field(default="default", description="The route (model) that runs it.")
    endpoint: str | None = Field(
        default=None, description="The RunPod endpoint its latest submission went to."
    )
    priority: Priority = Priority.NORMAL
    attempts: int
    error: ErrorOut | None
    timings: TimingsOut
    cost: CostOut
    images: list[ImageOut]
    webhook_url: str | None
    webhook_deliveries: list[WebhookDeliveryOut] = Field(
        default_factory=list, description="The signed webhooks sent for this job, with attempts."
    )
    links: LinksOut
    replayed: bool = Field(default=False, description="True when an Idempotency-Key replayed it.")
    trace_id: str | None = Field(
        default=None,
        description="Its OpenTelemetry trace (32 hex digits): the request that asked for it, its "
        "submission to RunPod, RunPod's webhook, its images. Null while tracing is off.",
    )


class BatchOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [examples.RUNNING_BATCH, examples.ACCEPTED_BATCH]}
    )

    id: str
    object: Literal["batch"] = "batch"
    created_at: datetime
    size: int
    counts: dict[str, int]
    done: bool
    jobs: list[JobOut]
    webhook_deliveries: list[WebhookDeliveryOut] = Field(
        default_factory=list, description="`batch.completed`, once the last job has ended."
    )
    replayed: bool = False


class EventImageOut(BaseModel):
    """An image as a job's `completed` event shows it: its URLs work at once (a signed URL of
    an image still downloading redirects to the worker's copy)."""

    id: str
    url: str
    signed_url: str
    signed_url_expires_at: datetime
    state: Literal["pending", "stored", "failed", "deleted"]


class JobEventOut(BaseModel):
    """One event of `GET /jobs/{id}/events` (the `data` of its SSE frame)."""

    id: int = Field(description="Grows with each event; send the last one as `Last-Event-ID`.")
    kind: str = Field(description="`created`, `status`, and other steps of the job's timeline.")
    status: JobStatus | None = Field(description="The job's status after the event.")
    message: str | None
    at: datetime
    images: list[EventImageOut] | None = Field(
        default=None, description="The job's images, on the event that completes it."
    )


class JobPage(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [examples.JOB_PAGE]})

    items: list[JobOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page.")


class ConnectionTestOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [examples.CONNECTION_TEST]})

    ok: bool
    key_accepted: bool | None
    latency_ms: float
    workers: dict[str, int] | None = None
    jobs: dict[str, int] | None = None
    error: str | None = None


class QueueStatsOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [examples.QUEUE_STATS]})

    jobs_by_status: dict[str, int]
    queues: dict[str, int | None]
    runpod_health: dict[str, dict[str, int]] | None
    runpod_error: str | None
    stall_reason: str | None
    routes: list[ModelOut] = Field(
        description="Each route's jobs and its endpoints' health, as `GET /models` lists them."
    )


class UsageDay(BaseModel):
    day: str
    jobs: int
    completed: int
    images: int
    gpu_seconds: float
    estimated_usd: float


class UsageOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [examples.USAGE]})

    days: list[UsageDay]
    gpu_price_per_second: float
    job_estimate_usd: float = Field(description="What a new job counts against the budgets.")
    budgets: list[BudgetOut] = Field(description="The caller's budgets (none: no limit).")


class WebhookReceipt(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [examples.WEBHOOK_RECEIPT]})

    received: bool
    changed: bool = Field(description="False for a repeated or out-of-date delivery.")
