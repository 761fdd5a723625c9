"""`ROUTES_FILE=routes.example.toml make run`: the built-in simulator stands in for every
endpoint of the example routes, and a job completes on each route, in its worker's form."""

import subprocess
import time
from pathlib import Path

import httpx
import pytest

from app.devstack import wait_http
from tests.docs.helpers import ROOT
from tests.docs.test_commands import ROUTES_RUN, processes, start_in
from tests.stack.processes import clean_env
from tests.stack.waiting import free_port

__all__ = ["processes"]  # the fixture, shared with test_commands
ROUTES = ("sdxl", "comfyui", "flux")


def test_the_example_routes_run_on_the_built_in_simulator(
    tmp_path: Path, processes: list["subprocess.Popen[bytes]"]
) -> None:
    variable, value = ROUTES_RUN.split(" ", 1)[0].split("=")
    api_port, sim_port = free_port(), free_port()
    env = clean_env(SIMULATOR_PORT=str(sim_port), **{variable: str(ROOT / value)})
    processes.append(start_in(tmp_path, f"podrelay dev --port {api_port}", env=env))
    log = tmp_path / "logs" / "out.log"
    base = f"http://127.0.0.1:{api_port}/api/v1/runpod"
    try:
        wait_http(f"http://127.0.0.1:{api_port}/healthz", timeout=120)
    except TimeoutError:
        pytest.fail(log.read_text(errors="replace")[-3000:])
    deadline = time.monotonic() + 90
    assert "3 routes from" in log.read_text()

    jobs = {}
    for model in ROUTES:
        answer = httpx.post(f"{base}/generate", json={"prompt": "a red fox", "model": model})
        assert answer.status_code == 202, answer.text
        jobs[model] = answer.json()["id"]
    refused = httpx.post(f"{base}/generate", json={"prompt": "x", "model": "nope"})
    assert refused.status_code == 422
    assert refused.json()["code"] == "unknown_model"

    for model, job_id in jobs.items():
        while (job := httpx.get(f"{base}/status/{job_id}").json())["status"] != "completed":
            assert job["status"] in ("pending", "queued", "running"), job
            assert time.monotonic() < deadline, log.read_text(errors="replace")[-3000:]
            time.sleep(0.3)
        assert job["route"] == model
        assert job["images"], job

    listed = httpx.get(f"{base}/models").json()["models"]
    assert [(m["name"], m["default"], m["kind"]) for m in listed] == [
        ("sdxl", True, "sdxl"),
        ("comfyui", False, "comfyui"),
        ("flux", False, "flux"),
    ]
    assert [e["id"] for e in listed[0]["endpoints"]] == ["sdxl", "sdxl-b"]
    served = {job["endpoint"] for job in (httpx.get(f"{base}/jobs").json()["items"])}
    checked = {e["id"] for m in listed for e in m["endpoints"] if e["checked_at"] is not None}
    assert served <= checked  # the endpoints that ran jobs were checked by the dispatcher
