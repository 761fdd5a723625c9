"""The baseline run of the in-flight benchmark: the seed's design (`bench.seed_baseline`) given
the same jobs for a bounded time, on a simulator of its own."""

import sys
import time
from pathlib import Path
from typing import Any

from app.devstack import stop_process
from bench.inflight_report import Result
from bench.seed_baseline import TASK, create_app
from bench.stack import (
    SimulatorProcess,
    TreeSampler,
    child_env,
    redis_db,
    running,
    simulator,
    wait_ready,
)

NODE = "seed-baseline@bench"


def run_baseline(
    jobs: int, duration_s: float, seconds: float, redis_number: int | None, folder: Path
) -> Result:
    """Enqueue `jobs` seed tasks and let one prefork worker (2 processes) run for `seconds`."""
    folder.mkdir(parents=True)
    with (
        redis_db(redis_number) as broker,
        simulator(folder, jobs=jobs, duration_s=duration_s) as sim,
    ):
        env = child_env(
            seed_baseline_broker=broker,
            seed_baseline_dir=str(folder),
            seed_baseline_runpod=f"{sim.url}/v2/bench-seed",
        )
        argv = [
            sys.executable, "-m", "celery", "-A", "bench.seed_baseline", "worker",
            "--pool", "prefork", "--concurrency", "2", "--loglevel", "WARNING",
            "-n", NODE,
        ]  # fmt: skip
        log = folder / "worker.log"
        with running(argv, env, log) as worker:
            client = create_app(broker, folder)
            wait_ready(client, NODE, process=worker)
            sampler = TreeSampler(worker.pid)
            sampler.mark_start()
            sampler.start()
            started = time.monotonic()
            ids = [client.send_task(TASK, args=[f"seed baseline job {i}"]).id for i in range(jobs)]
            peak = _watch(sim, until=started + seconds)
            wall_s = time.monotonic() - started
            sampler.finish()
            stop_process(worker, kill=True)
        completed = sum(1 for task_id in ids if client.AsyncResult(task_id).successful())
        client.close()
        counters: dict[str, Any] = sim.get("/_sim/counters")
    return Result(
        label="seed baseline",
        jobs=jobs,
        wall_s=wall_s,
        runpod_jobs=counters["jobs_created"],
        peak_in_flight=peak,
        completed=completed,
        duplicates=sum(n - 1 for n in counters["jobs_by_fingerprint"].values()),
        calls=counters["calls"],
        responses_429=sum(codes.get("429", 0) for codes in counters["responses"].values()),
        peak_rss_mb=sampler.peak_rss_mb,
        cpu_s=sampler.work_cpu_s,
    )


def _watch(sim: SimulatorProcess, *, until: float) -> int:
    """The most jobs queued or running at the simulator at once, sampled every second."""
    peak = 0
    while time.monotonic() < until:
        by_status = sim.get("/_sim/counters")["jobs_by_status"]
        peak = max(peak, by_status.get("IN_QUEUE", 0) + by_status.get("IN_PROGRESS", 0))
        time.sleep(1.0)
    return peak
