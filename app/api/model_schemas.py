"""What `GET /models` returns: the routes (models) with their endpoints' live health, as
`app.scheduler.overview` assembles them. The queue statistics embed the same route objects."""

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.api import examples
from app.scheduler.circuit import Circuit
from app.scheduler.overview import RouteOverview
from app.scheduler.routes import WorkerKind


class WorkersOut(BaseModel):
    """RunPod's worker counts at the last /health (null: never checked, or not reported)."""

    idle: int | None
    ready: int | None
    running: int | None
    initializing: int | None
    throttled: int | None
    unhealthy: int | None


class RunPodJobsOut(BaseModel):
    in_queue: int | None = Field(description="Jobs in the endpoint's queue at RunPod.")
    in_progress: int | None = Field(description="Jobs its workers run.")


class BoundsOut(BaseModel):
    max_width: int
    max_height: int
    max_steps: int
    max_images: int


class EndpointHealthOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str = Field(description="The RunPod endpoint id.")
    weight: float = Field(description="Its share of the route's jobs.")
    max_in_flight: int | None = Field(
        description="Jobs it may hold queued or running at RunPod (null: never checked)."
    )
    workers: WorkersOut
    runpod_jobs: RunPodJobsOut
    queue_delay_p50_ms: int | None = Field(
        description="Median wait in its queue at RunPod of its jobs of the last 15 minutes."
    )
    execution_p50_ms: int | None = Field(
        description="Median run time of its jobs of the last 15 minutes."
    )
    circuit: Circuit = Field(description="`open`: out of rotation until `retry_at`.")
    circuit_reason: str | None = Field(description="Why its circuit opened.")
    circuit_since: datetime | None
    retry_at: datetime | None = Field(description="When an open circuit is probed again.")
    trips: int = Field(description="Times its circuit opened in a row.")
    checked_at: datetime | None = Field(description="Its last /health (null: never checked).")
    error: str | None = Field(description="Why the last /health failed, if it did.")
    queued_jobs: int = Field(description="Podrelay's jobs in its queue at RunPod.")
    running_jobs: int = Field(description="Podrelay's jobs its workers run.")


class ModelOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    name: str = Field(description="What a request names as `model`.")
    default: bool = Field(description="The route of a request that names no model.")
    kind: WorkerKind = Field(description="The worker's input format.")
    price_per_second: float = Field(description="USD per GPU second.")
    max_queue_delay_s: float
    defaults: dict[str, Any] = Field(description="The parameters a request leaves out.")
    bounds: BoundsOut
    fallbacks: list[str] = Field(description="Routes that take its jobs when it cannot.")
    pending_jobs: int = Field(description="Podrelay's jobs waiting for one of its endpoints.")
    waiting_jobs: int = Field(description="Not yet running: pending, or queued at RunPod.")
    endpoints: list[EndpointHealthOut]


class ModelsOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [examples.MODELS]})

    models: list[ModelOut] = Field(description="Every route, the default first.")


def models_out(overviews: list[RouteOverview]) -> list[ModelOut]:
    return [ModelOut.model_validate(overview) for overview in overviews]
