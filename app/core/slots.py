"""A bound on concurrent calls sized by Little's law: as many at once as a target rate needs at
the time a call is observed to take, between a floor and a ceiling.

Why not a fixed bound: each connection an httpx pool keeps open costs CPU on every request
(httpcore checks each idle one, with a syscall), and a pool grows to the calls in flight. A
bound sized for RunPod across the internet (/run in ~0.2 s: 20 calls at once to reach its
allowance) then taxes every call on a fast link: 32 calls at once cost a worker 1.5 ms of CPU
per /run on loopback where 4 cost 0.6 ms. Sized by the observed time, the bound (and the pool)
is small where calls are fast and grows up to the ceiling where they are slow.

`async with slots:` holds one slot for the block; the time a block holds its slot is the time
that sizes the bound (retries and their back-off included, which is what occupancy means).
"""

import asyncio
import math
import time
from collections import deque
from types import TracebackType

# Slots kept beyond what the rate needs at the average time: bursts, and slower calls.
HEADROOM = 2.0
# The weight of each new observation in the moving average of the time held.
SMOOTHING = 0.05


class LatencySizedSlots:
    def __init__(self, *, rate: float, floor: int, ceiling: int) -> None:
        self._rate = rate  # calls per second the holders must be able to reach
        self._floor, self._ceiling = floor, ceiling
        self._held_s = 0.0
        self._busy = 0
        self._since: dict[asyncio.Task[object], float] = {}
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def limit(self) -> int:
        wanted = math.ceil(self._rate * self._held_s * HEADROOM)
        return min(self._ceiling, max(self._floor, wanted))

    @property
    def busy(self) -> int:
        return self._busy

    async def __aenter__(self) -> None:
        while self._busy >= self.limit:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
                self._wake()  # a wake-up this waiter can no longer use goes to the next
                raise
        self._busy += 1
        task = asyncio.current_task()
        if task is not None:
            self._since[task] = time.monotonic()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        task = asyncio.current_task()
        started = self._since.pop(task, None) if task is not None else None
        if started is not None:
            self._held_s += (time.monotonic() - started - self._held_s) * SMOOTHING
        self._busy -= 1
        self._wake()

    def _wake(self) -> None:
        free = self.limit - self._busy
        while free > 0 and self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                free -= 1
