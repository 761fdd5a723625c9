"""`podrelay models` against a real API process with two routes on the simulator's endpoints:
the table shows the routes and, once a dispatcher has checked them, each endpoint's workers and
circuit (a throttled endpoint tripped while a job waits)."""

import asyncio
import json
import subprocess
from pathlib import Path

import httpx

from app.accounts.service import create_key
from app.jobs.dispatch import Dispatcher
from app.jobs.engine import JobEngine
from app.simulator.config import SimulatorConfig
from tests.cli.helpers import assert_error_line, run_podrelay
from tests.stack.deployment import WorkerStack
from tests.stack.factory import stack_factory
from tests.stack.http_api import API, bearer
from tests.stack.processes import clean_env

SIMULATOR = SimulatorConfig(workers=2, job_duration_ms=100, random_seed=11)


def _check_health(stack: WorkerStack) -> None:
    """What a worker's dispatcher does every HEALTH_CHECK_INTERVAL, once."""

    async def check() -> None:
        engine = JobEngine.from_settings(stack.settings)
        try:
            await Dispatcher(engine).check_due_endpoints()
        finally:
            await engine.aclose()
            engine.db.dispose()

    asyncio.run(check())


def test_models_prints_the_routes_and_their_endpoints_health(tmp_path: Path) -> None:
    with stack_factory(tmp_path) as factory:
        simulator = factory.simulator(SIMULATOR.model_copy())
        simulator.set_endpoint("ep-b", throttled=True)
        routes = tmp_path / "routes.toml"
        routes.write_text(
            f"""
[routes.sdxl]
default = true
fallbacks = ["flux"]
[[routes.sdxl.endpoints]]
url = "{simulator.base_url}/ep-a"
[[routes.sdxl.endpoints]]
url = "{simulator.base_url}/ep-b"
weight = 2

[routes.flux]
kind = "flux"
price_per_second = 0.00076
[[routes.flux.endpoints]]
url = "{simulator.base_url}/ep-flux"
"""
        )
        stack = factory.build(
            ledger="sqlite", broker="embedded", simulator=simulator, routes_file=routes
        )
        url = stack.start_api()
        with stack.db.session() as session:
            _, key = create_key(session, name="cli-models")

        def podrelay(*args: str, api_key: str = key) -> subprocess.CompletedProcess[str]:
            env = clean_env(PODRELAY_API_URL=url, PODRELAY_API_KEY=api_key, COLUMNS="240")
            return run_podrelay("models", *args, env=env, cwd=tmp_path)

        before = podrelay()
        assert before.returncode == 0, before.stderr
        lines = before.stdout.splitlines()
        assert any("sdxl (default)" in line and "ep-a" in line for line in lines), before.stdout
        assert any("flux" in line and "ep-flux" in line for line in lines), before.stdout
        assert any("sdxl, $0.00044/s" in line for line in lines), before.stdout
        assert any("fallbacks: flux" in line for line in lines), before.stdout
        assert before.stdout.count("not checked") == 3
        assert before.stdout.count("never") == 3

        accepted = httpx.post(
            f"{url}{API}/generate", json={"prompt": "a red fox"}, headers=bearer(key), timeout=30
        )
        assert accepted.status_code == 202, accepted.text
        _check_health(stack)

        after = podrelay()
        assert after.returncode == 0, after.stderr
        row = {
            line.split("│")[2].strip(): line for line in after.stdout.splitlines() if "ep-" in line
        }
        assert set(row) == {"ep-a", "ep-b", "ep-flux"}
        assert "0 throttled" in row["ep-a"]
        assert "closed" in row["ep-a"]
        assert "2 throttled" in row["ep-b"]
        assert "open (retry in" in row["ep-b"]
        assert "no worker can run (2 throttled)" in after.stdout.replace("│", " ")
        assert "1 pending" in after.stdout
        assert "not checked" not in after.stdout

        listed = json.loads(podrelay("--json").stdout)
        assert [model["name"] for model in listed] == ["sdxl", "flux"]
        assert listed[0]["endpoints"][1]["circuit"] == "open"

        assert_error_line(podrelay(api_key="prk_not-a-key"), "unauthorized: ")
