"""Job store, queue and worker dispatch, all driven by event-loop timers.

Nothing polls: each job holds at most three timer handles (TTL, the current run step, and
retention), so tens of thousands of jobs cost only heap entries. Queue entries carry the job's
generation (see `JobQueue`).
"""

import asyncio
import random
import time
import uuid
from collections import Counter
from typing import Any

from app.simulator.config import SimulatorConfig
from app.simulator.counters import Counters, fingerprint
from app.simulator.envelope import Envelope
from app.simulator.images import ImageRegistry
from app.simulator.jobs import RETRYABLE, Job, JobQueue, JobStatus, health_counts
from app.simulator.outputs import build_output, needs_base64
from app.simulator.pool import Worker, WorkerPool
from app.simulator.webhooks import WebhookSender
from app.simulator.worker import Plan, make_rng, plan_job


class Engine:
    def __init__(
        self,
        config: SimulatorConfig,
        *,
        counters: Counters,
        registry: ImageRegistry,
        webhooks: WebhookSender,
        pool_rng: random.Random,
    ) -> None:
        self._config = config
        self._counters = counters
        self._registry = registry
        self._webhooks = webhooks
        self._pool_rng = pool_rng
        self._pool = WorkerPool(pool_rng)
        self._jobs: dict[str, Job] = {}
        self._queue = JobQueue()
        self._assigned: dict[str, Worker] = {}
        self._renders: set[asyncio.Task[None]] = set()
        self._sequence = 0

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
            ttl_s=self._ttl_s(envelope.ttl_ms),
            low_priority=envelope.low_priority,
            sync=sync,
            base_url=base_url,
            rng=rng,
            queued_at=self._now(),
        )
        self._jobs[job.id] = job
        job.ttl_handle = self._loop().call_later(job.ttl_s, self._remove, job)
        self._counters.record_job(envelope.input)
        self._enqueue(job)
        return job

    def _ttl_s(self, requested_ms: int) -> float:
        cap_ms = self._config.ttl_cap_ms
        return (min(requested_ms, cap_ms) if cap_ms else requested_ms) / 1000

    def get(self, endpoint_id: str, job_id: str) -> Job | None:
        job = self._jobs.get(job_id)
        return job if job is not None and job.endpoint_id == endpoint_id else None

    def snapshot(self, job: Job) -> dict[str, Any]:
        return job.snapshot(self._now(), progress=self._config.progress_updates)

    def stream(self, job: Job) -> dict[str, Any]:
        chunks = job.take_stream(self._now()) if self._config.progress_updates else []
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
        self._queue.prune()
        self._dispatch()
        return len(queued)

    def health(self, endpoint_id: str) -> dict[str, dict[str, int]]:
        jobs = [job for job in self._jobs.values() if job.endpoint_id == endpoint_id]
        return {
            "jobs": health_counts(jobs),
            "workers": self._pool.counts(self._now(), self._config.worker_idle_timeout_s),
        }

    def finish_times(self, since: float = 0.0, status: JobStatus | None = None) -> dict[str, float]:
        """When each job finished at `since` (Unix time) or later, as Unix time, by job id;
        only jobs that ended in `status` when one is given."""
        offset = time.time() - self._now()
        return {
            job.id: job.finished_at + offset
            for job in self._jobs.values()
            if job.finished_at is not None
            and job.finished_at + offset >= since
            and status in (None, job.status)
        }

    def statuses_by_input(self) -> dict[str, list[str]]:
        """The status of every job still kept, grouped by the fingerprint of its input."""
        grouped: dict[str, list[str]] = {}
        for job in self._jobs.values():
            grouped.setdefault(fingerprint(job.input), []).append(job.status.value)
        return grouped

    def jobs_by_status(self) -> dict[str, int]:
        count = Counter(job.status for job in self._jobs.values())
        return {status.value: count[status] for status in JobStatus}

    async def reset(self) -> None:
        """Forget every job and worker; waiters wake up and see their job as deleted."""
        renders = list(self._renders)
        for task in renders:
            task.cancel()
        await asyncio.gather(*renders, return_exceptions=True)
        for job in list(self._jobs.values()):
            self._drop(job)
        self._queue.clear()
        self._assigned.clear()
        self._pool = WorkerPool(self._pool_rng)
        self._sequence = 0

    # Scheduling.

    def rescale(self) -> None:
        """Apply a changed `workers` knob now: added workers take queued jobs at once."""
        self._dispatch()

    def _enqueue(self, job: Job) -> None:
        self._queue.push(job)
        self._dispatch()

    def _dispatch(self) -> None:
        self._pool.resize(self._config.workers)
        while self._pool.has_idle:
            job = self._queue.pop()
            if job is None:
                return
            worker = self._pool.acquire()
            self._assigned[job.id] = worker
            job.worker_id = worker.id
            cold_start_s = self._config.cold_start_ms / 1000
            if cold_start_s > 0 and worker.is_cold(self._now(), self._config.worker_idle_timeout_s):
                self._pool.boot(worker)
                job.run_handle = self._loop().call_later(cold_start_s, self._start, job)
            else:
                self._start(job)

    def _start(self, job: Job) -> None:
        worker = self._assigned[job.id]
        self._pool.booted(worker)
        job.status = JobStatus.IN_PROGRESS
        job.started_at = self._now()
        plan = plan_job(job.input, self._config, job.rng, worker.id)
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
        status = JobStatus(self._config.execution_timeout_status)
        limit_ms = round(job.execution_timeout_s * 1000)
        error = f"execution timeout of {limit_ms} ms exceeded" if status == "FAILED" else None
        self._finish(job, status, error=error)

    def _finish(
        self, job: Job, status: JobStatus, *, output: Any = None, error: str | None = None
    ) -> None:
        now = self._now()
        job.cancel_timers(keep_ttl=True)
        job.status, job.finished_at, job.output, job.error = status, now, output, error
        self._release(job, now)
        retention_s = self._config.retention_sync_s if job.sync else self._config.retention_run_s
        job.retention_handle = self._loop().call_later(retention_s, self._remove, job)
        job.done.set()
        self._webhooks.job_finished(job, now)
        self._dispatch()

    def _release(self, job: Job, now: float) -> None:
        worker = self._assigned.pop(job.id, None)
        if worker is not None:
            self._pool.release(worker, now)

    def _drop(self, job: Job) -> None:
        job.removed = True
        job.cancel_timers()
        self._jobs.pop(job.id, None)
        self._release(job, self._now())
        job.done.set()

    def _remove(self, job: Job) -> None:
        """Delete a job (TTL or retention ran out), freeing its worker if it was still running."""
        if not job.removed:
            self._drop(job)
            self._dispatch()
