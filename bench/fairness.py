"""Fairness: one key's burst must not hold back another key's jobs.

    python -m bench.fairness --quick             # A submits 1,000; about a minute
    python -m bench.fairness --json result.json  # A submits 5,000; a few minutes

The real stack on 127.0.0.1: PostgreSQL, Redis db 12, the simulator as a subprocess, the API
under uvicorn (the webhook receiver, as in the in-flight and failover benchmarks) and one
worker. The endpoint can start about 40 jobs a second (MAX_IN_FLIGHT 80 jobs of 2 s), so a
burst waits in Podrelay's queue. Webhooks tell the ledger at once when a job ends and its room
frees; by polling, the ledger learns it at the next read (1 s, then 2.5 s after submission),
so room frees in waves and a job that just missed one waits for the next, whatever its order.
Key A submits its jobs through the API (batches of 10, 16 at a time); 2 s later key B submits
20 jobs, one request each. B's wait is from its job's acceptance (`created_at`) to RunPod's
acceptance (`submitted_at`), p50 and p99, measured once with QUEUE_ORDER=fair and once with
QUEUE_ORDER=fifo, the order before the scheduler, as the baseline. The target: B's p99 <= 2 s
while A's backlog drains.
"""

import argparse
import asyncio
import json
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
from sqlalchemy import select

from app.core.db import Database
from app.jobs.models import Job
from bench.gateway import gateway, gateway_settings
from bench.inflight_report import percentiles
from bench.stack import database, free_port, redis_db, simulator

REDIS_DB = 12
TARGET_P99_S = 2.0
B_JOBS = 20
B_AFTER_S = 2.0
BATCH = 10
SENDERS = 16
PATH = "/api/v1/runpod/generate"
SMALL = {"width": 256, "height": 256}


@dataclass
class OrderResult:
    order: str
    a_jobs: int
    a_accepted_s: float  # how long A's submissions took
    b_wait_s: dict[str, float]  # p50, p99, max
    b_done: int  # B's jobs RunPod accepted before the bound


def run_order(order: str, a_jobs: int, folder: Path, bound_s: float) -> OrderResult:
    folder.mkdir(parents=True)
    with (
        database("postgres", folder) as database_url,
        redis_db(REDIS_DB) as redis_url,
        simulator(folder, jobs=200, duration_s=2.0) as sim,
    ):
        values = gateway_settings(
            folder,
            database_url=database_url,
            redis_url=redis_url,
            runpod_url=f"{sim.url}/v2/bench-fairness/run",
        ) | {"queue_order": order, "max_in_flight": "80", "runpod_job_timeout": "3600"}
        port = free_port()
        values["public_base_url"] = f"http://127.0.0.1:{port}"
        served = gateway(folder, values, port=port, node="fairness@bench", key_names=("a", "b"))
        with served as podrelay:
            print(
                f"[fairness] {order}: A submits {a_jobs}, B {B_JOBS} after {B_AFTER_S:g} s",
                flush=True,
            )
            a_took, b_ids = asyncio.run(_submit(podrelay.base, podrelay.keys, a_jobs))
            waits = _wait_for(podrelay.ledger, b_ids, bound_s)
    return OrderResult(
        order=order,
        a_jobs=a_jobs,
        a_accepted_s=round(a_took, 1),
        b_wait_s=percentiles(waits),
        b_done=len(waits),
    )


async def _submit(base: str, keys: list[str], a_jobs: int) -> tuple[float, list[str]]:
    """A's burst and, B_AFTER_S later, B's jobs; returns how long A's took and B's job ids."""
    limits = httpx.Limits(max_connections=SENDERS + B_JOBS)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client:
        started = time.monotonic()
        a_headers = {"Authorization": f"Bearer {keys[0]}"}
        batches = iter(range(0, a_jobs, BATCH))

        async def sender() -> None:
            for first in batches:
                prompts = [f"A {n}" for n in range(first, min(a_jobs, first + BATCH))]
                body = {"prompts": prompts, **SMALL}
                answer = await client.post(f"{PATH}/batch", json=body, headers=a_headers)
                answer.raise_for_status()

        a_burst = asyncio.gather(*(sender() for _ in range(SENDERS)))
        await asyncio.sleep(B_AFTER_S)
        b_headers = {"Authorization": f"Bearer {keys[1]}"}
        answers = await asyncio.gather(
            *(
                client.post(PATH, json={"prompt": f"B {n}", **SMALL}, headers=b_headers)
                for n in range(B_JOBS)
            )
        )
        await a_burst
        took = time.monotonic() - started
    for answer in answers:
        answer.raise_for_status()
    return took, [answer.json()["id"] for answer in answers]


def _wait_for(ledger: Database, job_ids: list[str], bound_s: float) -> list[float]:
    """Each job's wait from acceptance to RunPod's, once all have one (or the bound passed)."""
    deadline = time.monotonic() + bound_s
    while True:
        with ledger.session() as session:
            rows = session.execute(
                select(Job.created_at, Job.submitted_at).where(Job.id.in_(job_ids))
            ).all()
        waits = [(sent - made).total_seconds() for made, sent in rows if sent is not None]
        if len(waits) == len(job_ids) or time.monotonic() > deadline:
            return waits
        time.sleep(0.5)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.fairness", description=__doc__)
    parser.add_argument("--a-jobs", type=int, help="key A's burst (default 5000; quick 1000)")
    parser.add_argument("--quick", action="store_true", help="a small-scale run")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    if args.a_jobs is None:
        args.a_jobs = 1000 if args.quick else 5000
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    a_jobs = args.a_jobs
    bound_s = 60 + a_jobs / 20
    with tempfile.TemporaryDirectory(prefix="podrelay-fairness-") as folder:
        results = [
            run_order(order, a_jobs, Path(folder) / order, bound_s) for order in ("fair", "fifo")
        ]
    fair = results[0]
    met = fair.b_done == B_JOBS and fair.b_wait_s.get("p99", float("inf")) <= TARGET_P99_S
    for result in results:
        wait = result.b_wait_s
        print(
            f"{result.order}: B's wait p50 {wait.get('p50', float('nan')):.2f} s, "
            f"p99 {wait.get('p99', float('nan')):.2f} s ({result.b_done}/{B_JOBS} sent); "
            f"A's {result.a_jobs} accepted in {result.a_accepted_s:g} s"
        )
    print(f"B's p99 <= {TARGET_P99_S:g} s with fair order: {'met' if met else 'MISSED'}")
    if args.json:
        document = {
            "config": {"a_jobs": a_jobs, "quick": args.quick},
            "results": [asdict(result) for result in results],
            "target_p99_s": TARGET_P99_S,
            "met": met,
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
