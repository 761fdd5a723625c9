"""What the REST API accepts and returns. Requests reject unknown fields."""

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Path
from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, StringConstraints

from app.api import examples
from app.jobs.status import JobStatus
from app.services.generation_defaults import MAX_PROMPT_LENGTH, GenerationParams

# PostgreSQL text cannot hold a NUL byte (the statement fails, even a lookup), so no string
# input that reaches the ledger may carry one: it is a 422 like any other invalid value.
NO_NUL = r"^[^\x00]*$"
Prompt = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=MAX_PROMPT_LENGTH, pattern=NO_NUL
    ),
]
NegativePrompt = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=MAX_PROMPT_LENGTH, pattern=NO_NUL)
]
PathId = Annotated[str, Path(pattern=NO_NUL)]
WebhookUrl = Annotated[AnyHttpUrl, Field(description="Signed POST when the job ends.")]


class GenerationOptions(GenerationParams):
    negative_prompt: NegativePrompt | None = None
    timeout: float | None = Field(
        default=None, gt=0, description="Seconds before the job is cancelled (default 300)."
    )
    webhook_url: WebhookUrl | None = None


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
    url: str
    state: Literal["pending", "stored", "failed"]
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
    queue_position: int | None = Field(description="Jobs ahead of this one, while it waits.")
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


class JobEventOut(BaseModel):
    """One event of `GET /jobs/{id}/events` (the `data` of its SSE frame)."""

    id: int = Field(description="Grows with each event; send the last one as `Last-Event-ID`.")
    kind: str = Field(description="`created`, `status`, and other steps of the job's timeline.")
    status: JobStatus | None = Field(description="The job's status after the event.")
    message: str | None
    at: datetime


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


class WebhookReceipt(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [examples.WEBHOOK_RECEIPT]})

    received: bool
    changed: bool = Field(description="False for a repeated or out-of-date delivery.")
