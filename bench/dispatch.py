"""Dispatch rate: how fast the workers' dispatchers hand the gateway-held queue to RunPod.

    python -m bench.dispatch --quick            # 600 jobs per run; about two minutes
    python -m bench.dispatch --json result.json  # 3,000 jobs per run

Three runs of the in-flight benchmark's engine (`bench.inflight_engine`: PostgreSQL, Redis, the
simulator as RunPod, the API as webhook receiver), each with every job recorded at once, so
the dispatchers, not the API, set the pace; jobs of 1 s, one simulated GPU worker per job, and
MAX_IN_FLIGHT at the job count, so no cap from a cold endpoint's /health holds them back:

- one worker process at RunPod's default /run allowance (1,000 per 10 s): the rate RunPod
  accepted jobs at against that allowance (target >= 90 %), and the worker's CPU per job;
- one, then two worker processes with the allowance raised to 4,000 per 10 s, so that the
  workers, not the allowance, are the limit: two must dispatch >= 1.8 times what one does.
  Each run also reports how busy the whole machine was: where two workers share two cores
  with the simulator, PostgreSQL, Redis and the API, a machine near 100 % busy is the limit.

The rate is jobs accepted by RunPod per second from the first job recorded to the last
accepted.
"""

import argparse
import json
import shutil
import tempfile
from pathlib import Path

from bench.inflight_engine import RunOptions, run_engine
from bench.inflight_report import MIN_DISPATCH_SHARE, Result

REDIS_DB = 13
RAISED_RUN_LIMIT = 4000
MIN_SCALING = 1.8
QUICK = {"jobs": 600}
FULL = {"jobs": 3000}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.dispatch", description=__doc__)
    parser.add_argument("--jobs", type=int, help="jobs per run (default 3000; quick 600)")
    parser.add_argument("--quick", action="store_true", help="a small-scale smoke run")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    for name, value in (QUICK if args.quick else FULL).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


def _run(label: str, jobs: int, folder: Path, *, workers: int, limit: int | None) -> Result:
    options = RunOptions(
        jobs=jobs,
        duration_s=1.0,
        db="postgres",
        redis_db=REDIS_DB,
        timeout_s=120.0 + jobs / 20,
        job_timeout_s=None,
        workers=workers,
        run_rate_limit=limit,
        # Warm endpoints: the simulator starts every worker cold, and /health would make the
        # in-flight cap ramp up from IN_FLIGHT_FLOOR; this measures the dispatchers instead.
        max_in_flight=jobs,
    )
    print(f"[dispatch] {label}: {jobs} jobs, {workers} worker(s) ...", flush=True)
    result = run_engine("webhook", options, folder / label)
    result.label = label
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="podrelay-dispatch-"))
    try:
        one = _run("one worker", args.jobs, folder, workers=1, limit=None)
        raised_one = _run("one worker, raised allowance", args.jobs, folder, workers=1,
                          limit=RAISED_RUN_LIMIT)  # fmt: skip
        raised_two = _run("two workers, raised allowance", args.jobs, folder, workers=2,
                          limit=RAISED_RUN_LIMIT)  # fmt: skip
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    share = one.dispatch_share or 0.0
    scaling = (raised_two.accepted_per_s or 0.0) / max(raised_one.accepted_per_s or 0.0, 1e-9)
    met = {
        f"one worker >= {MIN_DISPATCH_SHARE:.0%} of the allowance": share >= MIN_DISPATCH_SHARE,
        f"two workers >= {MIN_SCALING:g}x one": scaling >= MIN_SCALING,
        "0 lost, 0 duplicates": all(
            result.lost == 0 and result.duplicates == 0 for result in (one, raised_one, raised_two)
        ),
    }
    for result in (one, raised_one, raised_two):
        print(
            f"{result.label}: {result.accepted_per_s or 0:.1f} jobs/s accepted "
            f"({result.allowance_per_s:g}/s allowed), CPU {result.cpu_ms_per_job:.1f} ms/job, "
            f"machine {result.machine_busy or 0:.0%} busy, "
            f"lost {result.lost}, duplicates {result.duplicates}"
        )
    print(f"dispatch share {share:.0%}; two workers / one: {scaling:.2f}")
    for target, ok in met.items():
        print(f"{target}: {'met' if ok else 'MISSED'}")
    if args.json:
        document = {
            "config": {key: value for key, value in vars(args).items() if key != "json"},
            "runs": {
                result.label: {
                    "accepted_per_s": result.accepted_per_s,
                    "allowance_per_s": result.allowance_per_s,
                    "cpu_ms_per_job": result.cpu_ms_per_job,
                    "machine_busy": result.machine_busy,
                    "workers": result.workers,
                    "lost": result.lost,
                    "duplicates": result.duplicates,
                }
                for result in (one, raised_one, raised_two)
            },
            "share": share,
            "scaling": scaling,
            "targets": met,
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
