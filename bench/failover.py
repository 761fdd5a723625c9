"""Failover: how soon a route's other endpoint takes the jobs of an endpoint that lost its GPUs,
and what moving costs those jobs.

    python -m bench.failover --quick             # 24 s of submissions; about a minute
    python -m bench.failover --json result.json  # 60 s of submissions

The real stack on 127.0.0.1: PostgreSQL, Redis db 14, the simulator as a subprocess serving
endpoints A and B (WORKERS workers each, jobs of 2 s), the API under uvicorn (the webhook
receiver) and one worker; ROUTES_FILE makes one route on A and B, equal weights, and
HEALTH_CHECK_INTERVAL is its default. Jobs are submitted steadily (`--rate` a second); a third
of the way in, A goes throttled (no GPU: what RunPod holds in its queue waits there) and stays
so. B alone has room for every job.

- failover time: from A's outage to the first job A held in its queue being accepted by B
  (moved once RunPod confirmed its cancel at A); target: at most two health-check intervals;
- the moved jobs' end-to-end time (the API's acceptance to completion), p50 and p99, against
  the jobs of the same run that did not move (the baseline);
- every job completed, none lost, none run to completion twice at RunPod.
"""

import argparse
import asyncio
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

import httpx
from sqlalchemy import select

from app.core.config import Settings
from app.core.db import Database, database_now
from app.jobs.models import Job, JobEvent
from app.jobs.status import JobStatus
from bench.gateway import gateway, gateway_settings
from bench.inflight_report import percentiles
from bench.stack import (
    SimulatorProcess,
    database,
    free_port,
    redis_db,
    simulator,
    write_routes,
)

REDIS_DB = 14
ENDPOINTS = ("bench-a", "bench-b")
WORKERS = 20  # per endpoint: 10 jobs of 2 s a second, more than --rate
JOB_S = 2.0
OUTAGE_AT = 1 / 3  # of the submissions
HEALTH_CHECK_INTERVAL = float(Settings.model_fields["health_check_interval"].default)
TARGET_FAILOVER_S = 2 * HEALTH_CHECK_INTERVAL
PATH = "/api/v1/runpod/generate"
SMALL = {"width": 256, "height": 256}


@dataclass
class Result:
    jobs: int
    completed: int
    lost: int  # accepted, not completed when the bound passed
    duplicates: int  # inputs RunPod completed more than once
    moved: int
    failover_s: float | None  # A's outage to the first moved job accepted by B
    first_move_s: float | None  # A's outage to the first job back in Podrelay's queue
    moved_e2e_s: dict[str, float]  # p50, p99, max
    baseline_e2e_s: dict[str, float]  # the jobs that did not move


def run(rate: float, duration: float, folder: Path) -> Result:
    with (
        database("postgres", folder) as database_url,
        redis_db(REDIS_DB) as redis_url,
        simulator(folder, jobs=WORKERS, duration_s=JOB_S) as sim,
    ):
        for endpoint in ENDPOINTS:
            _set_endpoint(sim, endpoint, workers=WORKERS)
        port = free_port()
        routes = write_routes(folder / "routes.toml", f"{sim.url}/v2", ENDPOINTS)
        values = gateway_settings(
            folder,
            database_url=database_url,
            redis_url=redis_url,
            runpod_url=f"{sim.url}/v2/{ENDPOINTS[0]}/run",
        ) | {"routes_file": str(routes), "public_base_url": f"http://127.0.0.1:{port}"}
        served = gateway(folder, values, port=port, node="failover@bench", key_names=("failover",))
        with served as podrelay:
            ledger = podrelay.ledger
            jobs = int(rate * duration)
            print(
                f"[failover] {jobs} jobs at {rate:g}/s; {ENDPOINTS[0]} throttled at 1/3", flush=True
            )

            def outage() -> datetime:
                _set_endpoint(sim, ENDPOINTS[0], throttled=True)
                with ledger.session() as session:
                    return database_now(session)

            job_ids, outage_at = asyncio.run(
                _submit(podrelay.base, podrelay.keys[0], jobs, rate, outage)
            )
            _wait_settled(ledger, job_ids, bound_s=120 + duration)
            by_input = sim.get("/_sim/jobs/by-input")
            return _measure(ledger, job_ids, outage_at, by_input)


def _set_endpoint(sim: SimulatorProcess, endpoint: str, **knobs: object) -> None:
    sim.client.patch(f"{sim.url}/_sim/endpoints/{endpoint}", json=knobs).raise_for_status()


async def _submit(
    base: str, key: str, jobs: int, rate: float, outage: Callable[[], datetime]
) -> tuple[list[str], datetime]:
    """`jobs` requests, one every 1/rate s; A's outage once a third are sent."""
    headers = {"Authorization": f"Bearer {key}"}
    limits = httpx.Limits(max_connections=32)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client:
        started = time.monotonic()
        sends = []
        outage_at: datetime | None = None
        for n in range(jobs):
            if n == int(jobs * OUTAGE_AT):
                outage_at = await asyncio.to_thread(outage)
            await asyncio.sleep(max(0.0, started + n / rate - time.monotonic()))
            body = {"prompt": f"failover {n}", **SMALL}
            sends.append(asyncio.create_task(client.post(PATH, json=body, headers=headers)))
        answers = await asyncio.gather(*sends)
    for answer in answers:
        answer.raise_for_status()
    assert outage_at is not None
    return [answer.json()["id"] for answer in answers], outage_at


def _wait_settled(ledger: Database, job_ids: list[str], *, bound_s: float) -> None:
    terminal = [status.value for status in JobStatus if status.is_terminal]
    deadline = time.monotonic() + bound_s
    while time.monotonic() < deadline:
        with ledger.session() as session:
            done = session.scalars(
                select(Job.id).where(Job.id.in_(job_ids), Job.status.in_(terminal))
            ).all()
        if len(done) == len(job_ids):
            return
        time.sleep(0.5)


def _measure(
    ledger: Database, job_ids: list[str], outage_at: datetime, by_input: dict[str, list[str]]
) -> Result:
    with ledger.session() as session:
        moves = session.execute(
            select(JobEvent.job_id, JobEvent.at).where(
                JobEvent.kind == "moved", JobEvent.job_id.in_(job_ids)
            )
        ).all()
        rows = session.execute(
            select(Job.id, Job.created_at, Job.submitted_at, Job.finished_at).where(
                Job.id.in_(job_ids), Job.status == JobStatus.COMPLETED.value
            )
        ).all()
    moved_ids = {job_id for job_id, _ in moves}
    first_move = min((at for _, at in moves), default=None)
    moved_e2e, baseline_e2e, accepted_at_b = [], [], []
    for job_id, created, submitted, finished in rows:
        assert submitted is not None
        assert finished is not None
        e2e = (finished - created).total_seconds()
        if job_id in moved_ids:
            moved_e2e.append(e2e)
            accepted_at_b.append((submitted - outage_at).total_seconds())
        else:
            baseline_e2e.append(e2e)
    return Result(
        jobs=len(job_ids),
        completed=len(rows),
        lost=len(job_ids) - len(rows),
        duplicates=sum(max(0, s.count("COMPLETED") - 1) for s in by_input.values()),
        moved=len(moved_ids),
        failover_s=round(min(accepted_at_b), 2) if accepted_at_b else None,
        first_move_s=round((first_move - outage_at).total_seconds(), 2) if first_move else None,
        moved_e2e_s=percentiles(moved_e2e),
        baseline_e2e_s=percentiles(baseline_e2e),
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.failover", description=__doc__)
    parser.add_argument("--rate", type=float, default=8.0, help="jobs submitted per second")
    parser.add_argument("--duration", type=float, help="seconds of submissions (60; quick 24)")
    parser.add_argument("--quick", action="store_true", help="a small-scale run")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    if args.duration is None:
        args.duration = 24.0 if args.quick else 60.0
    return args


def targets(result: Result) -> dict[str, bool]:
    failover = result.failover_s
    return {
        f"failover <= {TARGET_FAILOVER_S:g} s": failover is not None
        and failover <= TARGET_FAILOVER_S,
        "every job completed, 0 lost, 0 duplicates": result.completed == result.jobs
        and result.duplicates == 0,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="podrelay-failover-") as folder:
        result = run(args.rate, args.duration, Path(folder))
    met = targets(result)
    moved, baseline = result.moved_e2e_s, result.baseline_e2e_s
    print(
        f"{result.moved} of {result.jobs} jobs moved; first accepted by B "
        f"{result.failover_s} s after A's outage (the first moved back into "
        f"Podrelay's queue after {result.first_move_s} s); end-to-end p50/p99: moved "
        f"{moved.get('p50', float('nan')):.2f}/{moved.get('p99', float('nan')):.2f} s, "
        f"not moved {baseline.get('p50', float('nan')):.2f}/"
        f"{baseline.get('p99', float('nan')):.2f} s; completed {result.completed}, "
        f"lost {result.lost}, duplicates {result.duplicates}"
    )
    for target, ok in met.items():
        print(f"{target}: {'met' if ok else 'MISSED'}")
    if args.json:
        document = {
            "config": {key: value for key, value in vars(args).items() if key != "json"},
            "result": asdict(result),
            "health_check_interval_s": HEALTH_CHECK_INTERVAL,
            "target_failover_s": TARGET_FAILOVER_S,
            "targets": met,
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
