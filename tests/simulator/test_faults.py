"""Fault injection knobs: HTTP-level errors, throttles, latency, lost responses, worker faults."""

import json
import time

import httpx
import pytest

from app.simulator.server import SimulatorServer
from tests.simulator.helpers import SMALL, submit, wait_until

BODY = {"input": {"prompt": "p", **SMALL}}


def test_error_rate_answers_5xx_without_side_effects(
    sim: SimulatorServer, client: httpx.Client
) -> None:
    sim.set_faults(error_rates={"run": 1.0})
    responses = [client.post("/run", json=BODY) for _ in range(12)]
    assert {r.status_code for r in responses} <= {500, 502, 503}
    # Both body styles show up: some JSON, some plain text.
    kinds = {r.headers["content-type"].split(";")[0] for r in responses}
    assert kinds == {"application/json", "text/plain"}
    assert sim.counters()["jobs_created"] == 0
    assert client.get("/health").status_code == 200


def test_error_rate_fraction(sim: SimulatorServer, client: httpx.Client) -> None:
    sim.set_faults(error_rates={"health": 0.5})
    failures = sum(client.get("/health").status_code >= 500 for _ in range(200))
    assert 60 <= failures <= 140


def test_throttle_rate(sim: SimulatorServer, client: httpx.Client) -> None:
    sim.set_faults(throttle_rates={"status": 1.0})
    response = client.get("/status/anything")
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "1"


def test_throttle_burst_counts_down(
    sim: SimulatorServer, client: httpx.Client, anon: httpx.Client
) -> None:
    sim.set_faults(throttle_burst={"run": 2})
    codes = [client.post("/run", json=BODY).status_code for _ in range(3)]
    assert codes == [429, 429, 200]
    assert sim.counters()["jobs_created"] == 1
    assert anon.get("/_sim/config").json()["throttle_burst"] == {"run": 0}


def test_latency(sim: SimulatorServer, client: httpx.Client) -> None:
    sim.set_faults(latency_ms={"health": 300})
    start = time.monotonic()
    assert client.get("/health").status_code == 200
    assert time.monotonic() - start >= 0.3
    start = time.monotonic()
    client.post("/purge-queue")
    assert time.monotonic() - start < 0.3


@pytest.mark.parametrize("op", ["run", "runsync"])
def test_dropped_response_still_creates_the_job(
    sim: SimulatorServer, client: httpx.Client, op: str
) -> None:
    sim.set_faults(drop_run_response_rate=1.0)
    response = client.post(f"/{op}", json=BODY)
    assert response.status_code == 502
    counters = sim.counters()
    assert counters["jobs_created"] == 1
    deadline = time.monotonic() + 3
    while sim.counters()["jobs_by_status"]["COMPLETED"] != 1:
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_dropped_response_hang_mode(sim: SimulatorServer, client: httpx.Client) -> None:
    sim.set_faults(drop_run_response_rate=1.0, drop_mode="hang", hang_s=0.3)
    start = time.monotonic()
    response = client.post("/run", json=BODY)
    assert response.status_code == 504
    assert time.monotonic() - start >= 0.3
    assert sim.counters()["jobs_created"] == 1


def test_fail_rate_json_style(sim: SimulatorServer, client: httpx.Client) -> None:
    sim.set_faults(fail_rate=1.0, fail_style="json")
    job = wait_until(client, submit(client))
    assert job["status"] == "FAILED"
    error = json.loads(job["error"])
    assert set(error) == {
        "error_type",
        "error_message",
        "error_traceback",
        "hostname",
        "worker_id",
        "runpod_version",
    }
    assert error["error_type"] == "<class 'RuntimeError'>"
    assert error["error_traceback"].startswith("Traceback")
    assert error["worker_id"] == job["workerId"]


def test_fail_rate_mixed_style(sim: SimulatorServer, client: httpx.Client) -> None:
    sim.set_faults(fail_rate=1.0, workers=10)
    ids = [submit(client) for _ in range(10)]
    errors = [wait_until(client, i)["error"] for i in ids]
    json_errors = [e for e in errors if e.startswith("{")]
    assert 0 < len(json_errors) < 10
    assert all("error_message" in json.loads(e) for e in json_errors)


def test_fail_rate_fraction(sim: SimulatorServer, client: httpx.Client) -> None:
    sim.set_faults(fail_rate=0.5, fail_style="plain", workers=40, job_duration_ms=10)
    ids = [submit(client) for _ in range(40)]
    statuses = [wait_until(client, i)["status"] for i in ids]
    assert 8 <= statuses.count("FAILED") <= 32
    assert statuses.count("FAILED") + statuses.count("COMPLETED") == 40


def test_empty_output_rate(sim: SimulatorServer, client: httpx.Client) -> None:
    sim.set_faults(empty_output_rate=1.0)
    job = wait_until(client, submit(client))
    assert job["status"] == "COMPLETED"
    assert "output" not in job


def test_hang_rate_runs_into_execution_timeout(sim: SimulatorServer, client: httpx.Client) -> None:
    sim.set_faults(hang_rate=1.0)
    job_id = submit(client, {**BODY, "policy": {"executionTimeout": 400}})
    time.sleep(0.2)
    assert client.get(f"/status/{job_id}").json()["status"] == "IN_PROGRESS"
    job = wait_until(client, job_id)
    assert job["status"] == "TIMED_OUT"
    assert job["executionTime"] >= 380


def test_random_seed_makes_faults_reproducible(sim: SimulatorServer, client: httpx.Client) -> None:
    def pattern() -> list[int]:
        sim.reset()
        sim.set_faults(error_rates={"health": 0.5})
        return [client.get("/health").status_code for _ in range(30)]

    assert pattern() == pattern()
