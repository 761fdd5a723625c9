"""What the RunPod client costs over a bare httpx call, measured against the simulator.

Both loops issue the same GET /status calls at the same concurrency against one simulator in
this run; the figure that matters is the ratio, not the absolute rate (the machine is noisy).
"""

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from app.devstack import start_process, stop_process, wait_http
from app.runpod import RunPodClient
from bench.stack import free_port

Call = Callable[[], Awaitable[object]]
FULL = {"requests": 2000, "concurrency": 32, "rounds": 3}


async def measure(call: Call, *, requests: int, concurrency: int) -> tuple[float, float]:
    """Requests per second and p99 latency (ms) of `requests` calls at `concurrency`."""
    latencies: list[float] = []
    remaining = requests

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            started = time.perf_counter()
            await call()
            latencies.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    return requests / elapsed, statistics.quantiles(latencies, n=100)[98]


async def run(requests: int, concurrency: int, rounds: int) -> dict[str, Any]:
    # The simulator runs in its own process, so it does not share this one's GIL.
    port = free_port()
    simulator = start_process(
        [
            sys.executable,
            "-m",
            "app.cli",
            "simulator",
            "--port",
            str(port),
            "--job-duration-ms",
            "10",
            "--set",
            'rate_limits={"status": 0}',
        ],
        env=dict(os.environ),
        log_path=Path(tempfile.mkdtemp(prefix="podrelay-bench-")) / "simulator.log",
    )
    base_url = f"http://127.0.0.1:{port}/v2"
    try:
        wait_http(f"http://127.0.0.1:{port}/_sim/config")
        return await _compare(base_url, requests, concurrency, rounds)
    finally:
        stop_process(simulator)


async def _compare(base_url: str, requests: int, concurrency: int, rounds: int) -> dict[str, Any]:
    async with (
        RunPodClient(api_key="k", endpoint_id="bench", base_url=base_url) as client,
        httpx.AsyncClient(
            base_url=f"{base_url}/bench/", headers={"Authorization": "Bearer k"}
        ) as bare,
    ):
        job_id = (await client.run({"prompt": "bench", "width": 64, "height": 64})).id
        await client.wait(job_id, timeout=30, poll_interval=0.1)

        async def bare_call() -> object:
            response = await bare.get(f"status/{job_id}")
            response.raise_for_status()
            return response.json()

        async def client_call() -> object:
            return await client.status(job_id)

        rows = []
        for _ in range(rounds):  # interleaved, so drift hits both sides alike
            rows.append(
                (
                    await measure(bare_call, requests=requests, concurrency=concurrency),
                    await measure(client_call, requests=requests, concurrency=concurrency),
                )
            )
    bare_rps = statistics.median(row[0][0] for row in rows)
    client_rps = statistics.median(row[1][0] for row in rows)
    bare_p99 = statistics.median(row[0][1] for row in rows)
    client_p99 = statistics.median(row[1][1] for row in rows)
    print(f"GET /status x{requests} at concurrency {concurrency}, median of {rounds} rounds")
    print(f"{'':16}{'req/s':>10}{'p99 ms':>10}")
    print(f"{'bare httpx':16}{bare_rps:>10.0f}{bare_p99:>10.1f}")
    print(f"{'RunPodClient':16}{client_rps:>10.0f}{client_p99:>10.1f}")
    print(f"client/bare throughput ratio: {client_rps / bare_rps:.2f}")
    return {
        "rows": {
            "bare": {"requests_per_s": bare_rps, "p99_ms": bare_p99},
            "client": {"requests_per_s": client_rps, "p99_ms": client_p99},
        },
        "ratio": client_rps / bare_rps,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.client_overhead", description=__doc__)
    for name, default in FULL.items():
        parser.add_argument(f"--{name}", type=int, default=default)
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    result = asyncio.run(run(args.requests, args.concurrency, args.rounds))
    if args.json:
        config = {name: getattr(args, name) for name in FULL}
        document = {"config": {**config, "cpus": os.cpu_count()}, **result}
        args.json.write_text(json.dumps(document, indent=2) + "\n")


if __name__ == "__main__":
    main()
