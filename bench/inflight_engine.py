"""One engine run of the in-flight benchmark: simulator, API (webhook mode) and one worker.

Jobs enter the way the API's create path does it: `insert_jobs` commits the ledger rows (the
tracker would submit it `first_check_in` s later if no task did), then `submit_job_task` is sent
to the broker. The run ends when every job is final and every image stored, or at the deadline.
"""

import sys
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select

from app.celery_app import create_celery
from app.core.config import Settings
from app.core.db import Database
from app.core.migrate import upgrade_database
from app.devstack import wait_http, worker_argv
from app.jobs.models import Job, JobImage
from app.jobs.service import NewJob, record_jobs
from app.jobs.status import ACTIVE, JobStatus
from app.services.generation_defaults import GenerationParams
from bench.inflight_report import Result, percentiles
from bench.stack import (
    SimulatorProcess,
    TreeSampler,
    child_env,
    database,
    free_port,
    machine_busy,
    machine_times,
    redis_db,
    running,
    simulator,
    wait_ready,
)

SMALL = GenerationParams(width=256, height=256)
ENDPOINT = "bench-inflight"
_CHUNK = 500
_WINDOW_S = 10.0
_COMPLETIONS_EVERY = 5  # samples; a completed job stays >= 30 s (ttl: our deadline + 30 s)
_FINISH_MARGIN_S = 2.0


@dataclass
class RunOptions:
    jobs: int
    duration_s: float
    db: str  # sqlite | postgres
    redis_db: int | None  # None: the embedded broker
    timeout_s: float  # bound of one measurement
    job_timeout_s: float | None  # RUNPOD_JOB_TIMEOUT of the jobs; None: the engine's default
    workers: int = 1  # worker processes, each with its dispatcher
    run_rate_limit: int | None = None  # RunPod's /run allowance per 10 s; None: its default
    max_in_flight: int | None = None  # MAX_IN_FLIGHT; None: from /health (from cold: a ramp)


@dataclass
class Watch:
    """What the once-a-second probe saw while the jobs were in flight."""

    status_calls: list[tuple[float, int]] = field(default_factory=list)
    peak_in_flight: int = 0
    # When RunPod completed each job. It deletes a job once its ttl runs out, so these are
    # gathered as they come.
    completed_at: dict[str, float] = field(default_factory=dict)
    _asked_at: float = 0.0

    def gather_completions(self, sim: SimulatorProcess) -> None:
        asked_at = time.time()
        since = self._asked_at - _FINISH_MARGIN_S
        found = sim.get(f"/_sim/jobs?status=COMPLETED&since={since}")["finished_at"]
        self.completed_at.update(found)
        self._asked_at = asked_at

    def max_per_window(self) -> int:
        """The most /status calls in any 10 s window, an upper bound from 1 s samples."""
        best, start = 0, 0
        for moment, count in self.status_calls:
            while start + 1 < len(self.status_calls) and (
                self.status_calls[start + 1][0] <= moment - _WINDOW_S
            ):
                start += 1
            then, before = self.status_calls[start]
            if moment - then >= _WINDOW_S:
                best = max(best, count - before)
        return best


def run_engine(mode: str, options: RunOptions, folder: Path) -> Result:
    folder.mkdir(parents=True)
    with (
        database(options.db, folder) as database_url,
        redis_db(options.redis_db) as redis_url,
        simulator(
            folder,
            jobs=options.jobs,
            duration_s=options.duration_s,
            run_rate_limit=options.run_rate_limit,
        ) as sim,
    ):
        api_port = free_port()
        values = {
            "runpod_url": f"{sim.url}/v2/{ENDPOINT}/run",
            "runpod_api_key": "bench-key",
            "database_url": database_url,
            "redis_url": redis_url,
            "public_base_url": f"http://127.0.0.1:{api_port}" if mode == "webhook" else "",
            "data_dir": str(folder / "data"),
            "media_dir": str(folder / "media"),
            "log_file": str(folder / "podrelay.log"),
        }
        if options.job_timeout_s is not None:
            values["runpod_job_timeout"] = str(options.job_timeout_s)
        if options.run_rate_limit is not None:
            values["runpod_run_rate_limit"] = str(options.run_rate_limit)
        if options.max_in_flight is not None:
            values["max_in_flight"] = str(options.max_in_flight)
        settings = Settings.model_validate(values)
        ledger = Database(database_url)
        upgrade_database(ledger)
        env = child_env(**values)
        with ExitStack() as stack:
            if mode == "webhook":
                api = [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1"]
                stack.enter_context(
                    running([*api, "--port", str(api_port)], env, folder / "api.log")
                )
                wait_http(f"http://127.0.0.1:{api_port}/healthz")
            celery = create_celery(settings)
            stack.callback(celery.close)
            samplers = []
            for number in range(options.workers):
                node = f"inflight-{mode}-{number}@bench"
                # Only the first runs the beat (the tracker's schedule); every one dispatches.
                argv = [*worker_argv(beat=number == 0), "-n", node]
                worker = stack.enter_context(running(argv, env, folder / f"worker-{number}.log"))
                wait_ready(celery, node, process=worker)
                samplers.append(TreeSampler(worker.pid))
            for sampler in samplers:
                sampler.mark_start()
                sampler.start()
            machine_before = machine_times()
            started = time.monotonic()
            _enqueue(settings, ledger, options.jobs, mode)
            watch = _watch(sim, ledger, deadline=started + options.timeout_s)
            wall_s = time.monotonic() - started
            for sampler in samplers:
                sampler.finish()
            busy = machine_busy(machine_before, machine_times())
        result = _collect(mode, sim, ledger, options, watch, samplers, wall_s)
        result.machine_busy = busy
        result.allowance_per_s = settings.runpod_run_rate_limit / settings.runpod_status_rate_window
        if mode == "polling":
            result.status_max_10s = watch.max_per_window()
            result.status_limit = settings.runpod_status_rate_limit
        ledger.dispose()
        return result


def _enqueue(settings: Settings, ledger: Database, jobs: int, tag: str) -> None:
    """Record the jobs as the API does; the workers' dispatchers find them in the ledger."""
    for first in range(0, jobs, _CHUNK):
        chunk = [
            NewJob(
                owner="bench",
                prompt=f"in-flight bench {tag} job {index}",
                params=SMALL.model_dump(mode="json"),
                timeout_s=settings.runpod_job_timeout,
            )
            for index in range(first, min(jobs, first + _CHUNK))
        ]
        with ledger.session() as session:
            record_jobs(session, chunk)


def _watch(sim: SimulatorProcess, ledger: Database, *, deadline: float) -> Watch:
    watch = Watch()
    while time.monotonic() < deadline:
        tick = time.monotonic()
        try:
            counters = sim.get("/_sim/counters")
        except httpx.TimeoutException:
            # A simulator saturated by the run may answer late; the next tick reads it again.
            continue
        calls = counters["calls"]
        watch.status_calls.append((tick, calls.get("status", 0) + calls.get("status-sync", 0)))
        by_status = counters["jobs_by_status"]
        in_flight = by_status.get("IN_QUEUE", 0) + by_status.get("IN_PROGRESS", 0)
        watch.peak_in_flight = max(watch.peak_in_flight, in_flight)
        with ledger.session() as session:
            active = session.scalar(
                select(func.count()).select_from(Job).where(Job.status.in_(list(ACTIVE)))
            )
            images = session.scalar(
                select(func.count()).select_from(JobImage).where(JobImage.state == "pending")
            )
        if len(watch.status_calls) % _COMPLETIONS_EVERY == 0:
            watch.gather_completions(sim)
        if not active and not images:
            break
        time.sleep(max(0.0, tick + 1.0 - time.monotonic()))
    return watch


def _collect(
    mode: str,
    sim: SimulatorProcess,
    ledger: Database,
    options: RunOptions,
    watch: Watch,
    samplers: list[TreeSampler],
    wall_s: float,
) -> Result:
    counters: dict[str, Any] = sim.get("/_sim/counters")
    watch.gather_completions(sim)
    completed_at = watch.completed_at
    with ledger.session() as session:
        jobs = session.execute(select(Job.status, Job.runpod_job_id, Job.finished_at)).all()
        expired = session.scalar(
            select(func.count()).select_from(Job).where(Job.error_code == "expired_in_queue")
        )
        first, last, accepted = session.execute(
            select(
                func.min(Job.created_at), func.max(Job.submitted_at), func.count(Job.submitted_at)
            )
        ).one()
        stored = session.scalar(
            select(func.count()).select_from(JobImage).where(JobImage.state == "stored")
        )
    lags = [
        ended.timestamp() - completed_at[runpod_id]
        for status, runpod_id, ended in jobs
        if status == JobStatus.COMPLETED and ended and runpod_id in completed_at
    ]
    missed = sum(
        1
        for status, runpod_id, _ in jobs
        if status != JobStatus.COMPLETED and runpod_id in completed_at
    )
    statuses = [JobStatus(status) for status, _, _ in jobs]
    others = Counter(
        status.value for status in statuses if status.is_terminal and status != JobStatus.COMPLETED
    )
    fingerprints: dict[str, int] = counters["jobs_by_fingerprint"]
    return Result(
        label=mode,
        jobs=options.jobs,
        wall_s=wall_s,
        runpod_jobs=counters["jobs_created"],
        peak_in_flight=watch.peak_in_flight,
        completed=statuses.count(JobStatus.COMPLETED),
        duplicates=sum(count - 1 for count in fingerprints.values()),
        calls=counters["calls"],
        responses_429=sum(codes.get("429", 0) for codes in counters["responses"].values()),
        peak_rss_mb=max(sampler.peak_rss_mb for sampler in samplers),
        cpu_s=sum(sampler.work_cpu_s for sampler in samplers),
        workers=options.workers,
        expired_before_submission=expired or 0,
        lost=options.jobs - sum(status.is_terminal for status in statuses),
        other_terminal=dict(others),
        images_stored=stored or 0,
        lag_s=percentiles(lags),
        completed_at_runpod_only=missed,
        webhooks=counters["webhooks"],
        accepted_per_s=accepted / (last - first).total_seconds() if last and first else 0.0,
    )
