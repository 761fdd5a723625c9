"""The dispatcher: one per worker process, it moves the gateway-held queue to RunPod.

A round visits every endpoint of the catalogue in a random order weighted by the endpoints'
weights. An endpoint in rotation (its circuit closed, `app.scheduler.circuit`) has room for
`max_in_flight` less the jobs it holds and this process's submissions still on their way; it
takes as many tokens of its /run allowance as that room (shared by every process,
`app.core.allowance`), then claims the next jobs of its route in dispatch order and sends them
(`app.jobs.submit`). A half-open endpoint takes one probe job at a time; an open one none. An
endpoint also takes the jobs of the routes that fall back on its route while every endpoint of
theirs is out of rotation. Rounds follow each other as long as there is work, room and
allowance; otherwise the dispatcher looks again after `IDLE_S`. A round cut short by an
allowance also waits `IDLE_S` before the next: the tokens refilled meanwhile then go out
together (about 10 jobs at RunPod's default of 100 /run a second), with one claim, one
recording and one load reading, where rounds back to back would each send the one or two jobs
refilled since the last and pay those transactions per job.

Every HEALTH_CHECK_INTERVAL (each second while an endpoint is full) the dispatcher reads each
endpoint's /health (`app.scheduler.capacity`), which may take it out of rotation; it then moves
the jobs waiting in an open endpoint's queue elsewhere (`app.jobs.failover`).

Several dispatchers share one queue safely: a claim skips rows another transaction holds and
jobs another worker leased, so no job is sent twice, and all take the queue's head.
"""

import asyncio
import math
import random
from dataclasses import dataclass
from typing import NamedTuple

from loguru import logger

from app.jobs.claims import Prepared, prepare
from app.jobs.engine import JobEngine
from app.jobs.failover import move_queued_jobs
from app.jobs.submit import send_prepared
from app.jobs.tracking import poll_overdue_queued
from app.runpod import RunPodError
from app.scheduler.capacity import endpoint_loads, record_health, run_bucket
from app.scheduler.circuit import Circuit
from app.scheduler.routes import Endpoint

# How long an idle dispatcher, or one that spent an allowance, waits before its next round.
IDLE_S = 0.1
_RETRY_S = 1.0
# While the in-flight cap holds work back, /health is asked this often: an endpoint scaling up
# from cold shows its new workers, and the cap grows with them, within a second.
CAPPED_HEALTH_S = 1.0


@dataclass
class _Lane:
    """What this dispatcher knows of one endpoint."""

    endpoint: Endpoint
    max_in_flight: int
    checked_at: float | None = None
    watched: bool = False  # full or out of rotation: /health each CAPPED_HEALTH_S
    sending: int = 0


class Round(NamedTuple):
    """What a dispatch round did: the jobs it started sending, and whether an allowance gave
    fewer tokens than an endpoint had room for."""

    started: int
    allowance_spent: bool


class Dispatcher:
    def __init__(self, engine: JobEngine) -> None:
        self._engine = engine
        settings = engine.settings
        self._bucket = run_bucket(settings)
        self._round_max = max(1, math.floor(self._bucket.burst))
        self._lanes = [
            _Lane(e, e.max_in_flight or settings.max_in_flight or settings.in_flight_floor)
            for e in engine.catalogue.endpoints
        ]
        self._sends: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        """Dispatch until cancelled; a failing round is logged and tried again."""
        try:
            while True:
                try:
                    await self.check_due_endpoints()
                    done = await self.dispatch_round()
                except Exception:  # noqa: BLE001 - a database or broker outage: try again
                    logger.opt(exception=True).warning("[DISPATCH] round failed; retrying")
                    await asyncio.sleep(_RETRY_S)
                    continue
                if not done.started or done.allowance_spent:
                    await asyncio.sleep(IDLE_S)
        finally:
            for task in self._sends:
                task.cancel()

    async def dispatch_round(self) -> Round:
        """Claim and start sending the next jobs the endpoints have room and allowance for."""
        engine = self._engine
        endpoint_ids = [lane.endpoint.id for lane in self._lanes]
        held, circuits = await engine.db.run(endpoint_loads, endpoint_ids)
        resting = self._resting_routes(circuits)
        started, allowance_spent = 0, False
        for lane in self._weighted_order():
            endpoint = lane.endpoint
            circuit = circuits.get(endpoint.id, Circuit.CLOSED)
            if circuit is Circuit.OPEN:
                lane.watched = True  # its queued jobs move as soon as RunPod lets them go
                continue
            room = lane.max_in_flight if circuit is Circuit.CLOSED else 1
            wanted = min(self._round_max, room - held.get(endpoint.id, 0) - lane.sending)
            lane.watched = wanted <= 0
            granted = await engine.allowance.take(endpoint.id, wanted, self._bucket)
            allowance_spent |= granted < wanted
            if granted <= 0:
                continue
            fallen_back = engine.catalogue.fallen_back_from(endpoint.route)
            routes = [route for route in fallen_back if route in resting]
            prepared = await engine.db.run(
                prepare, engine.settings, endpoint, limit=granted, routes=routes
            )
            await engine.allowance.refund(endpoint.id, granted - len(prepared), self._bucket)
            if prepared:
                self._start(lane, prepared)
                started += len(prepared)
        return Round(started, allowance_spent)

    def _resting_routes(self, circuits: dict[str, Circuit]) -> set[str]:
        """The routes none of whose endpoints is in rotation."""
        catalogue = self._engine.catalogue
        return {
            name
            for name, route in catalogue.routes.items()
            if all(circuits.get(e.id) is Circuit.OPEN for e in route.endpoints)
        }

    def _weighted_order(self) -> list[_Lane]:
        # Sorting by u ** (1 / weight) draws a weighted order without replacement.
        draws = [(random.random() ** (1 / lane.endpoint.weight), lane) for lane in self._lanes]  # noqa: S311
        return [lane for _, lane in sorted(draws, key=lambda draw: draw[0], reverse=True)]

    def _start(self, lane: _Lane, prepared: list[Prepared]) -> None:
        lane.sending += len(prepared)
        task = asyncio.get_running_loop().create_task(send_prepared(self._engine, prepared))
        self._sends.add(task)

        def done(finished: asyncio.Task[None]) -> None:
            self._sends.discard(finished)
            lane.sending -= len(prepared)
            if not finished.cancelled() and finished.exception() is not None:
                # Every answer had its chance to be recorded; the leases bring the rest back.
                logger.opt(exception=finished.exception()).error("[DISPATCH] a send failed")

        task.add_done_callback(done)

    async def check_due_endpoints(self) -> None:
        """Read /health of the endpoints due for it, and move the queued jobs of those out of
        rotation."""
        now = asyncio.get_running_loop().time()
        due = [lane for lane in self._lanes if self._health_due(lane, now)]
        if due:
            await asyncio.gather(*(self._check(lane) for lane in due))

    async def _check(self, lane: _Lane) -> None:
        engine, endpoint = self._engine, lane.endpoint
        report, error = None, None
        try:
            async with engine.runpod_slots:
                report = await engine.client(endpoint.id).health()
        except RunPodError as failure:
            error = failure.message[:200]
        if report is not None:
            await poll_overdue_queued(engine, endpoint)
        state = await engine.db.run(record_health, engine.settings, endpoint, report, error)
        lane.max_in_flight = state.max_in_flight
        lane.checked_at = asyncio.get_running_loop().time()
        if state.circuit == Circuit.OPEN:
            moved = await move_queued_jobs(engine, endpoint)
            if moved:
                logger.info("[DISPATCH] moved {} queued jobs off {}", moved, endpoint.id)

    def _health_due(self, lane: _Lane, now: float) -> bool:
        if lane.checked_at is None:
            return True
        interval = self._engine.settings.health_check_interval
        if lane.watched:
            interval = min(interval, CAPPED_HEALTH_S)
        return now >= lane.checked_at + interval
