"""Job store, queues and worker dispatch, all driven by event-loop timers.

Nothing polls: each job holds at most three timer handles (TTL, the current run step, and
retention), so tens of thousands of jobs cost only heap entries. Queue entries carry the job's
generation (see `JobQueue`).

One store holds every job; workers and queues come in fleets. Each configured endpoint has its
own fleet, run with its knobs; every other endpoint id shares the shared fleet and the global
knobs. A fleet whose knobs say throttled or unhealthy starts nothing: its jobs wait IN_QUEUE.
"""

import asyncio
import random
import uuid
from dataclasses import dataclass, field
from typing import Any

from app.simulator.config import SimulatorConfig
from app.simulator.counters import CounterBook
from app.simulator.endpoints import Endpoints
from app.simulator.envelope import Envelope
from app.simulator.images import ImageRegistry
from app.simulator.jobs import RETRYABLE, Job, JobQueue, JobStatus, health_counts
from app.simulator.outputs import build_output, needs_base64
from app.simulator.pool import Held, Worker, WorkerPool
from app.simulator.webhooks import WebhookSender
from app.simulator.worker import Plan, make_rng, plan_job


@dataclass(eq=False)
class Fleet:
    """The workers and queue of one configured endpoint, or (endpoint_id None) the shared ones."""

    endpoint_id: str | None
    pool: WorkerPool
    queue: JobQueue = field(default_factory=JobQueue)


def _held(knobs: SimulatorConfig) -> Held | None:
    return "unhealthy" if knobs.unhealthy else "throttled" if knobs.throttled else None


class Engine:
    def __init__(
        self,
        endpoints: Endpoints,
        *,
        counters: CounterBook,
        registry: ImageRegistry,
        webhooks: WebhookSender,
        pool_rng: random.Random,
    ) -> None:
        self._endpoints = endpoints
        self._config = endpoints.base
        self._counters = counters
        self._registry = registry
        self._webhooks = webhooks
        self._pool_rng = pool_rng
        self._jobs: dict[str, Job] = {}
        self._assigned: dict[str, tuple[Fleet, Worker]] = {}
        self._renders: set[asyncio.Task[None]] = set()
        self._sequence = 0
        self._build_fleets()

    def _build_fleets(self) -> None:
        self._shared = Fleet(None, WorkerPool(self._pool_rng))
        self._fleets: dict[str, Fleet] = {}
        for endpoint_id in self._endpoints.ids():
            self.rehome(endpoint_id)

    @staticmethod
    def _loop() -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    def _now(self) -> float:
        return self._loop().time()

    # Public operations, called from the routes.

    def submit(self, endpoint_id: str, envelope: Envelope, *, sync: bool, base_url: str) -> Job:
        self._sequence += 1
        seed = self._config.random_seed
        rng = make_rng(None if seed is None else f"{seed}:{self._sequence}")
        job = Job(
            id=f"{'sync-' if sync else ''}{uuid.uuid4()}-u1",
            endpoint_id=endpoint_id,
            input=envelope.input,
            webhook=envelope.webhook,
            execution_timeout_s=envelope.execution_timeout_ms / 1000,
            ttl_s=self._ttl_s(envelope.ttl_ms, self._endpoints.knobs(endpoint_id)),
            low_priority=envelope.low_priority,
            sync=sync,
            base_url=base_url,
            rng=rng,
            queued_at=self._now(),
        )
        self._jobs[job.id] = job
        job.ttl_handle = self._loop().call_later(job.ttl_s, self._remove, job)
        self._counters.of(endpoint_id).record_job(envelope.input)
        self._enqueue(job)
        return job

    @staticmethod
    def _ttl_s(requested_ms: int, knobs: SimulatorConfig) -> float:
        cap_ms = knobs.ttl_cap_ms
        return (min(requested_ms, cap_ms) if cap_ms else requested_ms) / 1000

    def get(self, endpoint_id: str, job_id: str) -> Job | None:
        job = self._jobs.get(job_id)
        return job if job is not None and job.endpoint_id == endpoint_id else None

    def snapshot(self, job: Job) -> dict[str, Any]:
        progress = self._endpoints.knobs(job.endpoint_id).progress_updates
        return job.snapshot(self._now(), progress=progress)

    def stream(self, job: Job) -> dict[str, Any]:
        progress = self._endpoints.knobs(job.endpoint_id).progress_updates
        chunks = job.take_stream(self._now()) if progress else []
        return {"status": job.status.value, "stream": chunks}

    async def wait(self, job: Job, timeout_s: float) -> bool:
        """Wait until the job is terminal or the timeout passes; False if it was deleted."""
        if not job.done.is_set():
            try:
                async with asyncio.timeout(timeout_s):
                    await job.done.wait()
            except TimeoutError:
                pass
        return not job.removed

    def cancel(self, job: Job) -> None:
        if not job.terminal:
            self._finish(job, JobStatus.CANCELLED)
            self._counters.of(job.endpoint_id).record_cancel(job.input)

    def retry(self, job: Job) -> bool:
        if job.status not in RETRYABLE:
            return False
        job.requeue(self._now())
        job.retries += 1
        self._enqueue(job)
        return True

    def purge(self, endpoint_id: str) -> int:
        queued = [
            job
            for job in self._jobs.values()
            if job.endpoint_id == endpoint_id and job.status is JobStatus.IN_QUEUE
        ]
        # Drop them all before dispatching, so a freed worker cannot grab a job being purged.
        for job in queued:
            self._drop(job)
        for fleet in self._all_fleets():
            fleet.queue.prune()
        self._dispatch_all()
        return len(queued)

    def health(self, endpoint_id: str) -> dict[str, dict[str, int]]:
        fleet = self._fleet(endpoint_id)
        knobs = self._knobs(fleet)
        workers = fleet.pool.counts(self._now(), knobs.worker_idle_timeout_s, _held(knobs))
        return {"jobs": health_counts(self.jobs(endpoint_id)), "workers": workers}

    def jobs(self, endpoint_id: str | None = None) -> list[Job]:
        """Every job still kept, or those of one endpoint."""
        jobs = self._jobs.values()
        return [job for job in jobs if endpoint_id in (None, job.endpoint_id)]

    async def reset(self) -> None:
        """Forget every job and worker; waiters wake up and see their job as deleted."""
        renders = list(self._renders)
        for task in renders:
            task.cancel()
        await asyncio.gather(*renders, return_exceptions=True)
        for job in list(self._jobs.values()):
            self._drop(job)
        self._assigned.clear()
        self._build_fleets()
        self._sequence = 0

    # Scheduling.

    def rescale(self) -> None:
        """Apply changed knobs now: added or unthrottled workers take queued jobs at once."""
        self._dispatch_all()

    def rehome(self, endpoint_id: str) -> None:
        """Give a newly configured endpoint its own fleet, or fold a deleted one's back into the
        shared fleet. Its queued jobs follow; running ones finish on the worker they have."""
        old = self._fleet(endpoint_id)
        if not self._endpoints.configured(endpoint_id):
            self._fleets.pop(endpoint_id, None)
        elif endpoint_id not in self._fleets:
            self._fleets[endpoint_id] = Fleet(endpoint_id, WorkerPool(self._pool_rng))
        new = self._fleet(endpoint_id)
        if new is not old:
            for job in old.queue.take(endpoint_id):
                new.queue.push(job)
        self._dispatch_all()

    def _fleet(self, endpoint_id: str) -> Fleet:
        return self._fleets.get(endpoint_id, self._shared)

    def _all_fleets(self) -> list[Fleet]:
        return [self._shared, *self._fleets.values()]

    def _knobs(self, fleet: Fleet) -> SimulatorConfig:
        return self._endpoints.knobs(fleet.endpoint_id)

    def _enqueue(self, job: Job) -> None:
        fleet = self._fleet(job.endpoint_id)
        fleet.queue.push(job)
        self._dispatch(fleet)

    def _dispatch_all(self) -> None:
        for fleet in self._all_fleets():
            self._dispatch(fleet)

    def _dispatch(self, fleet: Fleet) -> None:
        knobs, pool = self._knobs(fleet), fleet.pool
        pool.resize(knobs.workers)
        if _held(knobs):
            pool.go_cold()
            return
        while pool.has_idle:
            job = fleet.queue.pop()
            if job is None:
                return
            worker = pool.acquire()
            self._assigned[job.id] = (fleet, worker)
            job.worker_id = worker.id
            cold_start_s = knobs.cold_start_ms / 1000
            if cold_start_s > 0 and worker.is_cold(self._now(), knobs.worker_idle_timeout_s):
                pool.boot(worker)
                job.run_handle = self._loop().call_later(cold_start_s, self._start, job)
            else:
                self._start(job)

    def _start(self, job: Job) -> None:
        fleet, worker = self._assigned[job.id]
        fleet.pool.booted(worker)
        job.status = JobStatus.IN_PROGRESS
        job.started_at = self._now()
        plan = plan_job(job.input, self._knobs(fleet), job.rng, worker.id)
        job.duration_s, job.total_steps = plan.duration_s, plan.total_steps
        if plan.outcome == "hang" or plan.duration_s >= job.execution_timeout_s:
            job.run_handle = self._loop().call_later(job.execution_timeout_s, self._time_out, job)
        else:
            job.run_handle = self._loop().call_later(plan.duration_s, self._end_run, job, plan)

    def _end_run(self, job: Job, plan: Plan) -> None:
        if plan.request is None or plan.outcome == "fail":
            self._finish(job, JobStatus.FAILED, error=plan.error)
        elif plan.outcome == "empty":
            self._finish(job, JobStatus.COMPLETED)
        elif needs_base64(plan.request):
            task = self._loop().create_task(self._render_and_complete(job, plan))
            self._renders.add(task)
            task.add_done_callback(self._renders.discard)
        else:
            self._finish(job, JobStatus.COMPLETED, output=self._output(job, plan))

    def _output(self, job: Job, plan: Plan) -> dict[str, Any]:
        assert plan.request is not None
        return build_output(
            plan.request, registry=self._registry, base_url=job.base_url, duration_s=plan.duration_s
        )

    async def _render_and_complete(self, job: Job, plan: Plan) -> None:
        generation = job.generation
        output = await asyncio.to_thread(self._output, job, plan)
        if generation == job.generation and job.status is JobStatus.IN_PROGRESS and not job.removed:
            self._finish(job, JobStatus.COMPLETED, output=output)

    def _time_out(self, job: Job) -> None:
        status = JobStatus(self._endpoints.knobs(job.endpoint_id).execution_timeout_status)
        limit_ms = round(job.execution_timeout_s * 1000)
        error = f"execution timeout of {limit_ms} ms exceeded" if status == "FAILED" else None
        self._finish(job, status, error=error)

    def _finish(
        self, job: Job, status: JobStatus, *, output: Any = None, error: str | None = None
    ) -> None:
        now = self._now()
        job.cancel_timers(keep_ttl=True)
        job.status, job.finished_at, job.output, job.error = status, now, output, error
        fleet = self._release(job, now)
        retention_s = self._config.retention_sync_s if job.sync else self._config.retention_run_s
        job.retention_handle = self._loop().call_later(retention_s, self._remove, job)
        job.done.set()
        self._webhooks.job_finished(job, now)
        self._dispatch(fleet)

    def _release(self, job: Job, now: float) -> Fleet:
        """Free the job's worker, if it had one; return the fleet that may now take a job."""
        assigned = self._assigned.pop(job.id, None)
        if assigned is None:
            return self._fleet(job.endpoint_id)
        fleet, worker = assigned
        fleet.pool.release(worker, now)
        # A deleted endpoint's fleet takes no more jobs; its endpoint's new one may.
        return fleet if fleet is self._shared else self._fleet(job.endpoint_id)

    def _drop(self, job: Job) -> Fleet:
        job.removed = True
        job.cancel_timers()
        self._jobs.pop(job.id, None)
        fleet = self._release(job, self._now())
        job.done.set()
        return fleet

    def _remove(self, job: Job) -> None:
        """Delete a job (TTL or retention ran out), freeing its worker if it was still running."""
        if not job.removed:
            self._dispatch(self._drop(job))
