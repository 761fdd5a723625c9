"""Podrelay's job states; the only place where RunPod's statuses are translated.

    pending ──▶ queued ──▶ running ──▶ completed
       │          │           │
       └──────────┴───────────┴──▶ failed | cancelled | timed_out

`pending`: accepted by Podrelay, not yet accepted by RunPod (or being retried).
`queued`: RunPod holds it and no worker has it yet. `running`: a RunPod worker has it.
A terminal state never changes again.
"""

from enum import StrEnum

from app.runpod.models import RunPodStatus


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
        return self in TERMINAL

    @classmethod
    def from_runpod(cls, status: RunPodStatus) -> "JobStatus | None":
        """Our state for a RunPod status; None for a status we do not know (keep waiting)."""
        return _FROM_RUNPOD.get(status)


TERMINAL = frozenset(
    {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.TIMED_OUT}
)
ACTIVE = frozenset(JobStatus) - TERMINAL

_FROM_RUNPOD = {
    RunPodStatus.IN_QUEUE: JobStatus.QUEUED,
    RunPodStatus.IN_PROGRESS: JobStatus.RUNNING,
    RunPodStatus.COMPLETED: JobStatus.COMPLETED,
    RunPodStatus.FAILED: JobStatus.FAILED,
    RunPodStatus.CANCELLED: JobStatus.CANCELLED,
    RunPodStatus.TIMED_OUT: JobStatus.TIMED_OUT,
}

_ORDER = {JobStatus.PENDING: 0, JobStatus.QUEUED: 1, JobStatus.RUNNING: 2}


def can_move(current: JobStatus, new: JobStatus) -> bool:
    """Whether `current -> new` is a legal step; stale or out-of-order readings are not."""
    if current.is_terminal:
        return False
    if new.is_terminal:
        return True
    return _ORDER[new] > _ORDER[current]
