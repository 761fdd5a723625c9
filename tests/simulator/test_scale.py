"""Load: many concurrent jobs must stay cheap (timers, not per-job loops; lazy rendering)."""

import asyncio
import time

import httpx

from app.simulator.config import SimulatorConfig
from app.simulator.envelope import Envelope
from app.simulator.reports import jobs_by_status
from app.simulator.server import SimulatorServer
from app.simulator.state import Simulator
from tests.simulator.helpers import API_KEY, ENDPOINT, SMALL


async def test_ten_thousand_concurrent_jobs() -> None:
    config = SimulatorConfig(
        workers=10_000, job_duration_ms=1000, job_duration_jitter_ms=500, random_seed=7
    )
    sim = Simulator(config)
    await sim.start()
    try:
        envelope = Envelope(
            input={"prompt": "load"},
            webhook=None,
            execution_timeout_ms=60_000,
            ttl_ms=60_000,
            low_priority=False,
        )
        started = time.monotonic()
        jobs = [
            sim.engine.submit(ENDPOINT, envelope, sync=False, base_url="http://sim")
            for _ in range(10_000)
        ]
        assert time.monotonic() - started < 8
        health = sim.engine.health(ENDPOINT)
        assert health["jobs"]["inProgress"] + health["jobs"]["completed"] == 10_000
        assert health["workers"]["running"] == health["jobs"]["inProgress"]
        done = await asyncio.gather(*(sim.engine.wait(job, 20) for job in jobs))
        assert all(done)
        assert jobs_by_status(sim.engine.jobs())["COMPLETED"] == 10_000
        assert time.monotonic() - started < 15
        counters = sim.counters.read()
        assert counters.jobs_created == 10_000
        assert counters.jobs_by_fingerprint.most_common(1)[0][1] == 10_000
    finally:
        await sim.stop()


async def test_concurrent_runsync_requests(sim: SimulatorServer) -> None:
    sim.set_faults(workers=100, job_duration_ms=300)
    headers = {"Authorization": f"Bearer {API_KEY}"}
    limits = httpx.Limits(max_connections=100)
    base_url = f"{sim.base_url}/{ENDPOINT}"
    async with httpx.AsyncClient(base_url=base_url, headers=headers, limits=limits) as client:
        started = time.monotonic()
        responses = await asyncio.gather(
            *(
                client.post("/runsync", json={"input": {"prompt": f"p{i}", **SMALL}}, timeout=30)
                for i in range(100)
            )
        )
        elapsed = time.monotonic() - started
    assert [r.json()["status"] for r in responses] == ["COMPLETED"] * 100
    # All hundred ran side by side: far less than 100 x 300 ms.
    assert elapsed < 6
