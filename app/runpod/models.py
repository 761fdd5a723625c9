"""RunPod's wire vocabulary: job statuses, the job object and the /health report."""

import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class RunPodStatus(StrEnum):
    """The job statuses RunPod's hosted API returns, plus UNKNOWN for any future one."""

    IN_QUEUE = "IN_QUEUE"
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    TIMED_OUT = "TIMED_OUT"
    UNKNOWN = "UNKNOWN"

    @classmethod
    def parse(cls, raw: object) -> "RunPodStatus":
        """Map a status string from RunPod; anything unrecognised becomes UNKNOWN."""
        if isinstance(raw, str):
            # The docs list a RUNNING state that the API reports as IN_PROGRESS.
            normalized = "IN_PROGRESS" if raw.upper() == "RUNNING" else raw.upper()
            if normalized in cls.__members__:
                return cls(normalized)
        return cls.UNKNOWN

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = frozenset(
    {RunPodStatus.COMPLETED, RunPodStatus.FAILED, RunPodStatus.CANCELLED, RunPodStatus.TIMED_OUT}
)


@dataclass(frozen=True)
class JobState:
    """One reading of a RunPod job, as returned by /run, /runsync, /status or /cancel."""

    id: str
    status: RunPodStatus
    raw_status: str
    delay_time_ms: int | None = None
    execution_time_ms: int | None = None
    worker_id: str | None = None
    output: Any = None
    """The job's result; only set once the job is COMPLETED."""
    progress: Any = None
    """The worker's latest progress update while the job is still running."""
    error: str | None = None
    """The raw error string of a FAILED job (may be runpod-python's JSON-encoded report)."""
    has_output: bool = False
    """False when a COMPLETED job came back with no `output` key (a failed result upload)."""

    @property
    def is_terminal(self) -> bool:
        return self.status.is_terminal

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> "JobState":
        """Build a state from a RunPod job object, tolerating missing and extra fields."""
        raw_status = str(payload.get("status", ""))
        status = RunPodStatus.parse(raw_status)
        output = payload.get("output")
        finished = status is RunPodStatus.COMPLETED
        error = payload.get("error")
        return cls(
            id=str(payload.get("id", "")),
            status=status,
            raw_status=raw_status,
            delay_time_ms=_as_int(payload.get("delayTime")),
            execution_time_ms=_as_int(payload.get("executionTime")),
            worker_id=_as_str(payload.get("workerId")),
            output=output if finished else None,
            progress=None if status.is_terminal else output,
            error=error if isinstance(error, str) or error is None else json.dumps(error),
            has_output=finished and output is not None,
        )


@dataclass(frozen=True)
class HealthReport:
    """RunPod's /health: job counts and worker counts; every count defaults to 0."""

    jobs: dict[str, int] = field(default_factory=dict)
    workers: dict[str, int] = field(default_factory=dict)

    def job_count(self, name: str) -> int:
        return self.jobs.get(name, 0)

    def worker_count(self, name: str) -> int:
        return self.workers.get(name, 0)

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> "HealthReport":
        return cls(jobs=_counts(payload.get("jobs")), workers=_counts(payload.get("workers")))


def describe_job_error(raw: str | None) -> str:
    """Turn a FAILED job's error into one readable line.

    runpod-python workers report an uncaught exception as a JSON string holding error_type,
    error_message and a traceback; a handler's own `{"error": "..."}` arrives as plain text.
    """
    if not raw:
        return "the worker reported FAILED without an error message"
    try:
        decoded = json.loads(raw)
    except ValueError:
        return raw.strip()
    if not isinstance(decoded, dict) or "error_message" not in decoded:
        return raw.strip()
    error_type = str(decoded.get("error_type", "")).strip()
    # "<class 'ValueError'>" -> "ValueError"
    if error_type.startswith("<class '") and error_type.endswith("'>"):
        error_type = error_type[len("<class '") : -2].rsplit(".", 1)[-1]
    message = str(decoded["error_message"]).strip()
    return f"{error_type}: {message}" if error_type else message


def _counts(value: object) -> dict[str, int]:
    if not isinstance(value, dict):
        return {}
    return {str(key): count for key, raw in value.items() if (count := _as_int(raw)) is not None}


def _as_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return int(value)
    return None


def _as_str(value: object) -> str | None:
    return value if isinstance(value, str) else None
