"""The seed's functions and its demo command, driven through real processes and HTTP."""

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from app.runpod import AmbiguousSubmissionError
from app.services import runpod_client
from app.services.generation_defaults import GenerationParams
from app.simulator.server import SimulatorServer
from tests.stack.waiting import free_port

SEED_DEMO = "import asyncio; from app.services.runpod_client import main; asyncio.run(main())"
SMALL = GenerationParams(width=256, height=256)


def run_demo(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("RUNPOD_", "SIMULATOR_"))}
    return subprocess.run(
        [sys.executable, "-c", SEED_DEMO],
        cwd=tmp_path,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_seed_demo_prints_the_url_of_a_png(tmp_path: Path, simulator: SimulatorServer) -> None:
    result = run_demo(tmp_path, RUNPOD_URL=f"{simulator.base_url}/demo/run", RUNPOD_API_KEY="any")
    assert result.returncode == 0, result.stderr
    url = result.stdout.strip().splitlines()[-1]
    assert url.startswith("http://127.0.0.1:")
    assert httpx.get(url).content.startswith(b"\x89PNG")


def test_seed_demo_with_nothing_reachable_says_so_without_traceback(tmp_path: Path) -> None:
    result = run_demo(
        tmp_path,
        RUNPOD_URL=f"http://127.0.0.1:{free_port()}/v2/demo/run",
        RUNPOD_API_KEY="any",
        RUNPOD_MAX_RETRIES="1",
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "error: cannot reach RunPod at http://127.0.0.1:" in result.stderr


def test_seed_demo_without_settings_points_at_the_simulator(tmp_path: Path) -> None:
    result = run_demo(tmp_path, SIMULATOR_PORT=str(free_port()), RUNPOD_MAX_RETRIES="0")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "podrelay simulator --port 8001" in result.stderr


def test_seed_demo_without_key_gives_the_seed_message(tmp_path: Path) -> None:
    result = run_demo(tmp_path, RUNPOD_URL="https://api.runpod.ai/v2/abc/run")
    assert result.returncode == 1
    assert result.stderr.strip() == "error: RUNPOD_API_KEY is not set"


@pytest.mark.usefixtures("runpod_env")
async def test_generate_100_of_100_under_status_faults(simulator: SimulatorServer) -> None:
    simulator.set_faults(error_rates={"status": 0.2}, throttle_rates={"status": 0.1})
    results = await asyncio.gather(
        *(
            runpod_client.generate_image_async(f"prompt {n}", params=SMALL, poll_interval=0.2)
            for n in range(100)
        )
    )
    await runpod_client.close_client()
    assert len({result.job_id for result in results}) == 100
    assert all(result.image_url for result in results)
    counters = simulator.counters()
    assert counters["jobs_created"] == 100
    statuses = counters["responses"]["status"]
    assert statuses.get("429", 0) > 0
    assert sum(count for code, count in statuses.items() if code.startswith("5")) > 0


@pytest.mark.usefixtures("runpod_env")
async def test_dropped_run_response_surfaces_as_ambiguous(simulator: SimulatorServer) -> None:
    simulator.set_faults(drop_run_response_rate=1.0, drop_mode="error")
    with pytest.raises(AmbiguousSubmissionError, match="may exist"):
        await runpod_client.generate_image_async("dropped", params=SMALL)
    await runpod_client.close_client()


@pytest.mark.usefixtures("runpod_env")
async def test_seed_functions_round_trip(simulator: SimulatorServer) -> None:
    simulator.set_faults(workers=0)
    job_id = await runpod_client.start_generation("queued", params=SMALL, timeout=60)
    assert (await runpod_client.check_status(job_id)).status == "IN_QUEUE"
    assert (await runpod_client.health()).job_count("inQueue") == 1
    assert (await runpod_client.cancel_job(job_id)).status == "CANCELLED"
    simulator.set_faults(workers=2)
    state = await runpod_client.run_sync("sync", params=SMALL, wait_ms=5000)
    assert state.status == "COMPLETED"
    assert await runpod_client.purge_queue() == 0
    await runpod_client.close_client()
