"""The job record and its wire views (status object, progress, stream chunks).

Lifecycle: IN_QUEUE -> IN_PROGRESS -> COMPLETED | FAILED | CANCELLED | TIMED_OUT. A cold-starting
worker already holds the job, but the job still reads IN_QUEUE until the worker is up, so the
boot time lands in `delayTime` as it does on RunPod. `retry` moves FAILED/TIMED_OUT back to
IN_QUEUE under the same id.
"""

import asyncio
import random
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class JobStatus(StrEnum):
    IN_QUEUE = "IN_QUEUE"
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    TIMED_OUT = "TIMED_OUT"


TERMINAL = frozenset(
    {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.TIMED_OUT}
)
RETRYABLE = frozenset({JobStatus.FAILED, JobStatus.TIMED_OUT})


def _ms(seconds: float) -> int:
    return max(0, round(seconds * 1000))


@dataclass(eq=False)
class Job:
    id: str
    endpoint_id: str
    input: Any
    webhook: str | None
    execution_timeout_s: float
    ttl_s: float
    low_priority: bool
    sync: bool
    base_url: str
    rng: random.Random
    queued_at: float
    status: JobStatus = JobStatus.IN_QUEUE
    worker_id: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    output: Any = None
    error: str | None = None
    duration_s: float = 0.0
    total_steps: int = 1
    streamed_step: int = 0
    retries: int = 0
    # Bumped on every (re)queue so stale queue entries and late callbacks can be recognised.
    generation: int = 0
    removed: bool = False
    done: asyncio.Event = field(default_factory=asyncio.Event)
    ttl_handle: asyncio.TimerHandle | None = None
    run_handle: asyncio.TimerHandle | None = None
    retention_handle: asyncio.TimerHandle | None = None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def cancel_timers(self, *, keep_ttl: bool = False) -> None:
        handles = [self.run_handle, self.retention_handle]
        if not keep_ttl:
            handles.append(self.ttl_handle)
        for handle in handles:
            if handle is not None:
                handle.cancel()
        self.run_handle = self.retention_handle = None
        if not keep_ttl:
            self.ttl_handle = None

    def requeue(self, now: float) -> None:
        """Clear the previous run's traces before the same job goes back into the queue."""
        self.cancel_timers(keep_ttl=True)
        self.status = JobStatus.IN_QUEUE
        self.worker_id = self.started_at = self.finished_at = self.output = self.error = None
        self.duration_s, self.total_steps, self.streamed_step = 0.0, 1, 0
        self.queued_at = now
        self.done = asyncio.Event()

    def step(self, now: float) -> int:
        """Return how many inference steps the simulated worker has reported so far."""
        if self.started_at is None:
            return 0
        if self.status is JobStatus.COMPLETED:
            return self.total_steps
        end = self.finished_at if self.finished_at is not None else now
        if self.duration_s <= 0:
            return 0
        reached = int((end - self.started_at) / self.duration_s * self.total_steps)
        return max(0, min(reached, self.total_steps - 1))

    def progress(self, step: int) -> dict[str, Any]:
        return {
            "progress": round(step / self.total_steps, 4),
            "step": step,
            "total_steps": self.total_steps,
        }

    def take_stream(self, now: float) -> list[dict[str, Any]]:
        """Return progress chunks not yet read; reading consumes them."""
        current = self.step(now)
        chunks = [{"output": self.progress(s)} for s in range(self.streamed_step + 1, current + 1)]
        self.streamed_step = max(self.streamed_step, current)
        return chunks

    def snapshot(self, now: float, *, progress: bool) -> dict[str, Any]:
        """Build the status object that /status, /runsync and webhooks return."""
        body: dict[str, Any] = {"id": self.id, "status": self.status.value}
        if self.status is not JobStatus.IN_QUEUE:
            end = self.finished_at if self.finished_at is not None else now
            start = self.started_at if self.started_at is not None else end
            body["delayTime"] = _ms(start - self.queued_at)
            body["executionTime"] = _ms(end - start)
        if self.worker_id is not None and self.started_at is not None:
            body["workerId"] = self.worker_id
        if self.status is JobStatus.IN_PROGRESS:
            step = self.step(now)
            if progress and step > 0:
                body["output"] = self.progress(step)
        elif self.output is not None:
            body["output"] = self.output
        if self.error is not None:
            body["error"] = self.error
        return body


def health_counts(jobs: list[Job]) -> dict[str, int]:
    """Count jobs the way `/health` reports them."""
    count = Counter(job.status for job in jobs)
    return {
        "completed": count[JobStatus.COMPLETED],
        "failed": count[JobStatus.FAILED],
        "inProgress": count[JobStatus.IN_PROGRESS],
        "inQueue": count[JobStatus.IN_QUEUE],
        "retried": sum(job.retries for job in jobs),
    }


class JobQueue:
    """Two FIFO lanes; low-priority jobs run only when no normal job is waiting.

    Entries carry the job's generation at enqueue time; an entry whose job was since cancelled,
    purged, expired or requeued is stale and skipped.
    """

    def __init__(self) -> None:
        self._lanes: tuple[deque[tuple[Job, int]], deque[tuple[Job, int]]] = (deque(), deque())

    def push(self, job: Job) -> None:
        job.generation += 1
        self._lanes[1 if job.low_priority else 0].append((job, job.generation))

    @staticmethod
    def _waiting(job: Job, generation: int) -> bool:
        return generation == job.generation and job.status is JobStatus.IN_QUEUE and not job.removed

    def pop(self) -> Job | None:
        for lane in self._lanes:
            while lane:
                job, generation = lane.popleft()
                if self._waiting(job, generation):
                    return job
        return None

    def prune(self) -> None:
        """Forget stale entries, so a purged or cancelled backlog does not linger in memory."""
        self._take(lambda _: False)

    def take(self, endpoint_id: str) -> list[Job]:
        """Remove and return the endpoint's waiting jobs, normal before low priority, each in
        order (and forget stale entries)."""
        return self._take(lambda job: job.endpoint_id == endpoint_id)

    def _take(self, wanted: Callable[[Job], bool]) -> list[Job]:
        taken: list[Job] = []
        for lane in self._lanes:
            waiting = [entry for entry in lane if self._waiting(*entry)]
            taken += [job for job, _ in waiting if wanted(job)]
            lane.clear()
            lane.extend(entry for entry in waiting if not wanted(entry[0]))
        return taken

    def clear(self) -> None:
        for lane in self._lanes:
            lane.clear()
