"""Webhook delivery: POST the job object when it finishes, retrying until the receiver says 200."""

import asyncio
import random
from typing import Any

import httpx

from app.simulator.config import SimulatorConfig
from app.simulator.counters import CounterBook
from app.simulator.jobs import Job, JobStatus

# CANCELLED and TIMED_OUT notify only with `webhook_on_cancel`: the contract leaves them open.
_ALWAYS_NOTIFY = frozenset({JobStatus.COMPLETED, JobStatus.FAILED})
# Deliveries in flight at once; the rest wait their turn here. httpcore's pool does work
# quadratic in its connections on every request (and a syscall or two per connection), so a
# pool grown to hundreds by a slow moment made every delivery slower still: at 3,000 jobs the
# simulator's own webhook client, not the receiver, then set the benchmarks' webhook lag.
# 16 at once carry about 500 deliveries a second to a receiver answering within 30 ms.
WEBHOOK_CONCURRENCY = 16


class WebhookSender:
    def __init__(self, config: SimulatorConfig, counters: CounterBook, rng: random.Random) -> None:
        self._config = config
        self._counters = counters
        self._rng = rng
        self._client: httpx.AsyncClient | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(WEBHOOK_CONCURRENCY)

    async def start(self) -> None:
        limits = httpx.Limits(
            max_connections=WEBHOOK_CONCURRENCY, max_keepalive_connections=WEBHOOK_CONCURRENCY
        )
        self._client = httpx.AsyncClient(limits=limits, follow_redirects=False)

    async def aclose(self) -> None:
        await self.cancel_all()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def cancel_all(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def job_finished(self, job: Job, now: float) -> None:
        """POST the job object, plus `input` and `webhook` echoes, if this ending notifies."""
        if job.webhook is None:
            return
        if job.status in _ALWAYS_NOTIFY or self._config.webhook_on_cancel:
            payload = {**job.snapshot(now, progress=False), "input": job.input}
            stats = self._counters.of(job.endpoint_id).webhooks
            self._send(job.webhook, {**payload, "webhook": job.webhook}, stats)

    def _send(self, url: str, payload: dict[str, Any], stats: dict[str, int]) -> None:
        """Schedule delivery in the background (or count it as dropped by fault injection)."""
        webhook_drop_rate = self._config.webhook_drop_rate
        if webhook_drop_rate > 0 and self._rng.random() < webhook_drop_rate:
            stats["dropped"] += 1
            return
        task = asyncio.get_running_loop().create_task(self._deliver(url, payload, stats))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, url: str, payload: dict[str, Any], stats: dict[str, int]) -> None:
        assert self._client is not None, "WebhookSender.start() was not awaited"
        for attempt in range(self._config.webhook_attempts):
            if attempt:
                await asyncio.sleep(self._config.webhook_retry_delay_s)
            stats["attempts"] += 1
            try:
                async with self._slots:
                    response = await self._client.post(
                        url, json=payload, timeout=self._config.webhook_timeout_s
                    )
            except (httpx.HTTPError, httpx.InvalidURL):
                continue
            if response.status_code == 200:
                stats["delivered"] += 1
                return
        stats["failed"] += 1
