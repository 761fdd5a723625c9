"""Simulated serverless workers: who is idle, booting or busy, and who is cold.

A worker is cold when it never ran or sat idle longer than `worker_idle_timeout_s` (RunPod has
scaled it away); picking a job up on a cold worker costs `cold_start_ms`. The idle list is kept
sorted by `last_active` (cold ones first, warmest last): hot workers are reused first, as a
real autoscaler would, and counting warm workers is a binary search, not a scan of thousands.
A held pool (its endpoint throttled or unhealthy) reports its workers without a job as held.
"""

import bisect
import math
import random
import string
from dataclasses import dataclass
from typing import Literal

_ID_ALPHABET = string.ascii_lowercase + string.digits

Held = Literal["throttled", "unhealthy"]


@dataclass(eq=False)
class Worker:
    id: str
    last_active: float | None = None

    def is_cold(self, now: float, idle_timeout_s: float) -> bool:
        return self.last_active is None or now - self.last_active > idle_timeout_s


def _activity(worker: Worker) -> float:
    return -math.inf if worker.last_active is None else worker.last_active


class WorkerPool:
    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._idle: list[Worker] = []
        self._busy: set[Worker] = set()
        self._booting: set[Worker] = set()
        self._target = 0

    def _size(self) -> int:
        return len(self._idle) + len(self._busy)

    def resize(self, target: int) -> None:
        """Grow with cold workers, or shrink by dropping the coldest idle ones first.

        Busy workers above the target retire when they finish their job.
        """
        self._target = target
        missing = target - self._size()
        if missing > 0:
            fresh = [Worker("".join(self._rng.choices(_ID_ALPHABET, k=14))) for _ in range(missing)]
            self._idle[:0] = fresh
        excess = self._size() - target
        if excess > 0:
            del self._idle[: min(excess, len(self._idle))]

    @property
    def has_idle(self) -> bool:
        return bool(self._idle)

    def acquire(self) -> Worker:
        """Hand the warmest idle worker to a job; call only when `has_idle`."""
        worker = self._idle.pop()
        self._busy.add(worker)
        return worker

    def boot(self, worker: Worker) -> None:
        self._booting.add(worker)

    def booted(self, worker: Worker) -> None:
        self._booting.discard(worker)

    def release(self, worker: Worker, now: float) -> None:
        """Return a worker to the idle list; one that never finished booting stays cold."""
        self._busy.discard(worker)
        booted = worker not in self._booting
        self._booting.discard(worker)
        if self._size() >= self._target:
            return
        if booted:
            worker.last_active = now
            self._idle.append(worker)
        else:
            worker.last_active = None
            self._idle.insert(0, worker)

    def go_cold(self) -> None:
        """Make every idle worker cold: a throttled worker loses its GPU, and boots again."""
        for worker in self._idle:
            worker.last_active = None

    def counts(self, now: float, idle_timeout_s: float, held: Held | None = None) -> dict[str, int]:
        booting = len(self._booting)
        first_warm = bisect.bisect_left(self._idle, now - idle_timeout_s, key=_activity)
        warm_idle = 0 if held else len(self._idle) - first_warm
        counts = {
            "idle": warm_idle,
            "initializing": booting,
            # The simulator has no separate "ready" phase: a booted idle worker is ready.
            "ready": warm_idle,
            "running": len(self._busy) - booting,
            "throttled": 0,
            "unhealthy": 0,
        }
        if held:
            counts[held] = len(self._idle)
        return counts
