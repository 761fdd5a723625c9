"""Every simulator knob in one mutable, validated model.

The knobs in `ENDPOINT_KNOBS` describe one endpoint (its workers, timing, output and faults):
an endpoint configured in `endpoints.Endpoints` may override them; the others are global.

Operation names (the keys of the per-operation dict knobs) are the path segment that follows
`/v2/{endpoint_id}/`: see `OPS`. `status` and `status-sync` share one rate-limit bucket, as in
the hosted contract, so `rate_limits` has no `status-sync` key.
"""

from collections.abc import Mapping
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator

# Operations addressed as `/v2/{endpoint_id}/{op}/{job_id}`; the others take no job id.
JOB_OPS = ("status", "status-sync", "stream", "cancel", "retry")
OPS = ("run", "runsync", "purge-queue", "health", *JOB_OPS)
DEFAULT_RATE_LIMITS = {
    "run": 1000,
    "runsync": 2000,
    "status": 2000,
    "stream": 2000,
    "cancel": 100,
    "purge-queue": 2,
}
MB = 1024 * 1024
DAY_MS = 24 * 3600 * 1000

OutputShape = Literal["worker-sdxl", "comfyui", "comfyui-legacy", "a1111", "sdxl-turbo", "public"]
OUTPUT_SHAPES: tuple[str, ...] = get_args(OutputShape)

Rate = Annotated[float, Field(ge=0, le=1)]
NonNegInt = Annotated[int, Field(ge=0)]


def rate_limit_key(op: str) -> str:
    """Name the rate-limit bucket an operation counts against."""
    return "status" if op == "status-sync" else op


def _check_ops(value: Mapping[str, object], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        raise ValueError(f"unknown operation(s) {unknown}; expected some of {list(allowed)}")


class SimulatorConfig(BaseModel):
    """Knobs of the RunPod Serverless simulator; change them live via `PATCH /_sim/config`."""

    model_config = ConfigDict(validate_assignment=True, extra="forbid")
    _revision: int = PrivateAttr(0)

    # Access. With no api_key any non-empty key is accepted; with no endpoint_ids any id is.
    api_key: str | None = None
    endpoint_ids: list[str] | None = None
    # Base for image links; None derives it from the submitting request's base URL.
    public_url: str | None = None

    # Simulated worker pool.
    workers: NonNegInt = 2
    cold_start_ms: NonNegInt = 0
    worker_idle_timeout_s: float = Field(5.0, ge=0)
    job_duration_ms: NonNegInt = 1500
    job_duration_jitter_ms: NonNegInt = 500
    random_seed: int | None = None
    progress_updates: bool = True

    # Request limits and waiting.
    max_body_run_bytes: int = Field(10 * MB, gt=0)
    max_body_runsync_bytes: int = Field(20 * MB, gt=0)
    default_wait_ms: int = Field(90_000, gt=0)
    min_wait_ms: NonNegInt = 1000
    max_wait_ms: int = Field(300_000, gt=0)

    # Job policy defaults and bounds (milliseconds).
    default_execution_timeout_ms: int = Field(600_000, gt=0)
    default_ttl_ms: int = Field(DAY_MS, gt=0)
    min_execution_timeout_ms: NonNegInt = 5000
    min_ttl_ms: NonNegInt = 10_000
    max_policy_ms: int = Field(7 * DAY_MS, gt=0)
    execution_timeout_status: Literal["TIMED_OUT", "FAILED"] = "TIMED_OUT"

    # Result retention after a terminal status (seconds).
    retention_run_s: float = Field(1800.0, ge=0)
    retention_sync_s: float = Field(60.0, ge=0)

    # Webhooks.
    webhook_on_cancel: bool = False
    webhook_attempts: int = Field(3, ge=1)
    webhook_retry_delay_s: float = Field(10.0, ge=0)
    webhook_timeout_s: float = Field(10.0, gt=0)

    # Rate limits per operation per rolling window; 0 disables a limit.
    rate_limits: dict[str, NonNegInt] = Field(default_factory=lambda: dict(DEFAULT_RATE_LIMITS))
    rate_limit_window_s: float = Field(10.0, gt=0)
    retry_after_header: bool = True

    # Worker output.
    output_shape: OutputShape = "worker-sdxl"
    max_image_side: int = Field(2048, ge=8)

    # Fault injection at the HTTP layer.
    error_rates: dict[str, Rate] = Field(default_factory=dict)
    throttle_rates: dict[str, Rate] = Field(default_factory=dict)
    throttle_burst: dict[str, NonNegInt] = Field(default_factory=dict)
    latency_ms: dict[str, NonNegInt] = Field(default_factory=dict)
    drop_run_response_rate: Rate = 0.0
    drop_mode: Literal["error", "hang"] = "error"
    hang_s: float = Field(30.0, ge=0)

    # Fault injection in the simulated worker.
    fail_rate: Rate = 0.0
    fail_style: Literal["json", "plain", "mixed"] = "mixed"
    empty_output_rate: Rate = 0.0
    hang_rate: Rate = 0.0
    webhook_drop_rate: Rate = 0.0
    # No GPU for the endpoint (throttled), or its workers failing (unhealthy): /health reports
    # the workers so, and new jobs stay IN_QUEUE until it is switched off; running jobs finish.
    throttled: bool = False
    unhealthy: bool = False
    # Ends every job's ttl (queue + run) this soon at most, whatever its policy asked, so jobs
    # expire at RunPod (and answer 404) before the client's deadline; 0 leaves ttls alone.
    ttl_cap_ms: NonNegInt = 0

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if name in type(self).model_fields:
            self._revision += 1

    @property
    def revision(self) -> int:
        """How many knob assignments this object has seen; endpoint views rebuild on a change."""
        return self._revision

    @field_validator("rate_limits")
    @classmethod
    def _merge_rate_limits(cls, value: dict[str, int]) -> dict[str, int]:
        _check_ops(value, tuple(op for op in OPS if op != "status-sync"))
        return {**DEFAULT_RATE_LIMITS, **value}

    @field_validator("error_rates", "throttle_rates", "throttle_burst", "latency_ms")
    @classmethod
    def _known_ops(cls, value: dict[str, Any]) -> dict[str, Any]:
        _check_ops(value, OPS)
        return value


# Knobs an endpoint may override (`PUT /_sim/endpoints/{endpoint_id}`); the rest are global.
ENDPOINT_KNOBS = frozenset(
    {
        "workers",
        "cold_start_ms",
        "worker_idle_timeout_s",
        "job_duration_ms",
        "job_duration_jitter_ms",
        "progress_updates",
        "output_shape",
        "max_image_side",
        "error_rates",
        "throttle_rates",
        "throttle_burst",
        "latency_ms",
        "drop_run_response_rate",
        "drop_mode",
        "hang_s",
        "fail_rate",
        "fail_style",
        "empty_output_rate",
        "hang_rate",
        "execution_timeout_status",
        "throttled",
        "unhealthy",
        "ttl_cap_ms",
    }
)
