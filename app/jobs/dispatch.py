"""The dispatcher: one per worker process, it moves the gateway-held queue to RunPod.

A round, for the endpoint: its room (`max_in_flight` less the jobs it holds and this process's
submissions still on their way), as many tokens of RunPod's /run allowance as that room takes
(shared by every process, `app.core.allowance`), then the next jobs of its route in dispatch
order are claimed and sent (`app.jobs.submit`). Rounds follow each other as long as there is
work, room and allowance; otherwise the dispatcher looks again after `IDLE_S`. It checks the
endpoint's /health every HEALTH_CHECK_INTERVAL (`app.scheduler.capacity`).

Several dispatchers share one queue safely: a claim skips rows another transaction holds and
jobs another worker leased, so no job is sent twice, and all take the queue's head.
"""

import asyncio
import math

from loguru import logger

from app.jobs.claims import Prepared, prepare
from app.jobs.engine import JobEngine
from app.jobs.submit import send_prepared
from app.runpod import RunPodError
from app.scheduler.capacity import in_flight, record_health, run_bucket

# How long an idle dispatcher waits before it looks at the queue again.
IDLE_S = 0.1
_RETRY_S = 1.0
# While the in-flight cap holds work back, /health is asked this often: an endpoint scaling up
# from cold shows its new workers, and the cap grows with them, within a second.
CAPPED_HEALTH_S = 1.0


class Dispatcher:
    def __init__(self, engine: JobEngine) -> None:
        self._engine = engine
        self._bucket = run_bucket(engine.settings)
        self._round_max = max(1, math.floor(self._bucket.burst))
        self._max_in_flight = engine.settings.max_in_flight or engine.settings.in_flight_floor
        self._checked_at: float | None = None
        self._capped = False
        self._sending = 0
        self._sends: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        """Dispatch until cancelled; a failing round is logged and tried again."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                try:
                    if self._health_due(loop.time()):
                        await self._check_health()
                        self._checked_at = loop.time()
                    sent = await self.dispatch_round()
                except Exception:  # noqa: BLE001 - a database or broker outage: try again
                    logger.opt(exception=True).warning("[DISPATCH] round failed; retrying")
                    await asyncio.sleep(_RETRY_S)
                    continue
                if not sent:
                    await asyncio.sleep(IDLE_S)
        finally:
            for task in self._sends:
                task.cancel()

    async def dispatch_round(self) -> int:
        """Claim and start sending the next jobs the endpoint has room and allowance for;
        returns how many."""
        engine = self._engine
        endpoint = engine.endpoint
        held = await engine.db.run(in_flight, endpoint)
        wanted = min(self._round_max, self._max_in_flight - held - self._sending)
        self._capped = wanted <= 0
        granted = await engine.allowance.take(endpoint.id, wanted, self._bucket)
        if granted <= 0:
            return 0
        prepared = await engine.db.run(prepare, engine.settings, endpoint, limit=granted)
        await engine.allowance.refund(endpoint.id, granted - len(prepared), self._bucket)
        if prepared:
            self._start(prepared)
        return len(prepared)

    def _start(self, prepared: list[Prepared]) -> None:
        self._sending += len(prepared)
        task = asyncio.get_running_loop().create_task(send_prepared(self._engine, prepared))
        self._sends.add(task)

        def done(finished: asyncio.Task[None]) -> None:
            self._sends.discard(finished)
            self._sending -= len(prepared)
            if not finished.cancelled() and finished.exception() is not None:
                # Every answer had its chance to be recorded; the leases bring the rest back.
                logger.opt(exception=finished.exception()).error("[DISPATCH] a send failed")

        task.add_done_callback(done)

    async def _check_health(self) -> None:
        engine = self._engine
        report, error = None, None
        try:
            async with engine.runpod_slots:
                report = await engine.runpod.health()
        except RunPodError as failure:
            error = failure.message[:200]
        state = await engine.db.run(record_health, engine.settings, engine.endpoint, report, error)
        self._max_in_flight = state.max_in_flight

    def _health_due(self, now: float) -> bool:
        if self._checked_at is None:
            return True
        interval = self._engine.settings.health_check_interval
        if self._capped:
            interval = min(interval, CAPPED_HEALTH_S)
        return now >= self._checked_at + interval
