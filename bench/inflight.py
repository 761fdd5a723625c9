"""Podrelay's job engine with N jobs in flight at once, against the seed's design.

    python -m bench.inflight --quick              # 200 jobs of 5 s: a smoke run, about a minute
    python -m bench.inflight --json result.json   # 10,000 jobs of 30 s, both modes + baseline

Real parts, all on 127.0.0.1 in a temporary directory: the RunPod simulator as a subprocess
(one simulated GPU worker per job, RunPod's default rate limits: /run 1000 and /status 2000
per 10 s), PostgreSQL (a database created and dropped per run; `--db sqlite` for a file),
Redis db 9 as the broker (flushed before and after; `--broker embedded` for the file-system
broker), the API under uvicorn as the webhook receiver (webhook mode), and one Celery worker
(`app.devstack.worker_argv()`: threads pool with embedded beat driving the tracker), or more.

Jobs enter as the API records them (`app.jobs.service.record_jobs`), all at once; the workers'
dispatchers find them in the gateway-held queue and send them at RunPod's /run allowance
(`--workers N` runs N worker processes, each dispatching). Each job has a distinct prompt, so a
second RunPod job for one input shows as a duplicate at the simulator.

Per mode it reports the rate RunPod accepted jobs at against its /run allowance, jobs that
expired in Podrelay's queue before submission, jobs lost (not final at the end), duplicates,
completions, the lag from the
simulator finishing a job to the job being final in the ledger (`finished_at` minus the
simulator's own finish time, from `GET /_sim/jobs`), RunPod calls per job by operation, the
worker's peak RSS and CPU (its whole process tree, from /proc every 0.5 s), and in polling mode
the most /status calls seen in any 10 s window (counters sampled every second) against
`RUNPOD_STATUS_RATE_LIMIT`.

The baseline is the seed's design (`bench.seed_baseline`): a prefork worker with concurrency 2
whose task submits one job and blocks polling /status every 5 s, given the same N jobs for
`--baseline-seconds` on its own simulator, with its broker in Redis db 10.
"""

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.inflight_baseline import run_baseline
from bench.inflight_engine import RunOptions, run_engine
from bench.inflight_report import Result, print_table, write_json

ENGINE_REDIS_DB = 9
BASELINE_REDIS_DB = 10
QUICK = {"jobs": 200, "duration": 5.0, "baseline_seconds": 12.0}
FULL = {"jobs": 10_000, "duration": 30.0, "baseline_seconds": 60.0}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.inflight",
        description="Podrelay's job engine with N in-flight jobs, against the seed's design.",
    )
    parser.add_argument("--jobs", type=int, help="jobs in flight (default 10000; quick 200)")
    parser.add_argument("--duration", type=float, help="seconds per job (default 30; quick 5)")
    parser.add_argument("--mode", choices=["webhook", "polling", "both"], default="both")
    parser.add_argument(
        "--baseline-seconds", type=float, help="how long the baseline runs (default 60; quick 12)"
    )
    parser.add_argument("--no-baseline", action="store_true", help="skip the seed baseline")
    parser.add_argument("--quick", action="store_true", help="a small-scale smoke run")
    parser.add_argument("--db", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--broker", choices=["redis", "embedded"], default="redis")
    parser.add_argument(
        "--timeout", type=float, help="bound of one engine run in s (default: from jobs, duration)"
    )
    parser.add_argument(
        "--job-timeout", type=float, help="each job's timeout in s (default: the engine's, 300)"
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="worker processes, each dispatching (default 1)"
    )
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs)")
    args = parser.parse_args(argv)
    defaults = QUICK if args.quick else FULL
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.jobs < 1 or args.duration <= 0 or args.baseline_seconds <= 0:
        parser.error("--jobs, --duration and --baseline-seconds must be positive")
    if args.timeout is None:
        # RunPod's /run limit admits 100 jobs/s; allow half that, plus the jobs' run time.
        args.timeout = 120.0 + args.jobs / 50 + 4 * args.duration
    return args


def run(args: argparse.Namespace, folder: Path) -> list[Result]:
    redis = args.broker == "redis"
    options = RunOptions(
        jobs=args.jobs,
        duration_s=args.duration,
        db=args.db,
        redis_db=ENGINE_REDIS_DB if redis else None,
        timeout_s=args.timeout,
        job_timeout_s=args.job_timeout,
        workers=args.workers,
    )
    modes = ["webhook", "polling"] if args.mode == "both" else [args.mode]
    results = []
    for mode in modes:
        print(f"[inflight] {mode} mode: {args.jobs} jobs of {args.duration:g} s ...", flush=True)
        results.append(run_engine(mode, options, folder / mode))
    if not args.no_baseline:
        print(f"[inflight] seed baseline for {args.baseline_seconds:g} s ...", flush=True)
        results.append(
            run_baseline(
                args.jobs,
                args.duration,
                args.baseline_seconds,
                BASELINE_REDIS_DB if redis else None,
                folder / "baseline",
            )
        )
    return results


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    config: dict[str, Any] = {
        key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()
    }
    started = time.monotonic()
    folder = Path(tempfile.mkdtemp(prefix="podrelay-inflight-"))
    try:
        results = run(args, folder)
    finally:
        if args.keep:
            print(f"[inflight] logs kept in {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    title = (
        f"{args.jobs:,} jobs of {args.duration:g} s, one worker, {args.db}, {args.broker} broker"
        f" ({time.monotonic() - started:.0f} s in all; load average now {load})"
    )
    print_table(results, title)
    if args.json:
        write_json(args.json, results, {**config, "load_average_at_end": os.getloadavg()})


if __name__ == "__main__":
    main()
