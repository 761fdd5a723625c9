"""Retention, TTL, execution timeout and policy bounds (contract 1.3, 3)."""

import time

import httpx
import pytest

from app.simulator.server import SimulatorServer
from tests.simulator.helpers import SMALL, submit, wait_for_404, wait_until


def test_run_result_expires_after_retention(sim: SimulatorServer, client: httpx.Client) -> None:
    sim.set_faults(retention_run_s=0.3)
    job_id = submit(client)
    assert wait_until(client, job_id)["status"] == "COMPLETED"
    assert 0.15 < wait_for_404(client, job_id) < 1.5
    assert client.get(f"/status/{job_id}").json() == {"error": "job not found"}


def test_runsync_result_uses_its_own_retention(sim: SimulatorServer, client: httpx.Client) -> None:
    sim.set_faults(retention_sync_s=0.2, retention_run_s=60)
    sync_id = client.post("/runsync", json={"input": {"prompt": "p", **SMALL}}).json()["id"]
    run_id = submit(client)
    wait_until(client, run_id)
    wait_for_404(client, sync_id)
    assert client.get(f"/status/{run_id}").status_code == 200


def test_ttl_deletes_job_mid_run(sim: SimulatorServer, client: httpx.Client) -> None:
    sim.set_faults(job_duration_ms=3000)
    job_id = submit(client, {"input": {"prompt": "p", **SMALL}, "policy": {"ttl": 300}})
    wait_until(client, job_id, lambda j: j["status"] == "IN_PROGRESS", timeout=1)
    assert 0.1 < wait_for_404(client, job_id) < 1.5
    # The worker is free again: a new job starts right away.
    sim.set_faults(workers=1, job_duration_ms=50)
    assert wait_until(client, submit(client))["status"] == "COMPLETED"


def test_a_queued_job_that_expired_never_takes_a_worker(
    sim: SimulatorServer, client: httpx.Client
) -> None:
    sim.set_faults(workers=0, job_duration_ms=2000)
    job_id = submit(client, {"input": {"prompt": "p", **SMALL}, "policy": {"ttl": 100}})
    wait_for_404(client, job_id)
    sim.set_faults(workers=1)
    workers = client.get("/health").json()["workers"]
    assert workers["running"] == 0
    assert workers["initializing"] == 0


def test_ttl_cap_shortens_the_ttl_a_job_asked_for(
    sim: SimulatorServer, client: httpx.Client
) -> None:
    sim.set_faults(workers=0, ttl_cap_ms=300)
    job_id = submit(client, {"input": {"prompt": "p"}, "policy": {"ttl": 600_000}})
    assert 0.1 < wait_for_404(client, job_id) < 1.5
    sim.set_faults(ttl_cap_ms=0)
    kept = submit(client, {"input": {"prompt": "p"}, "policy": {"ttl": 600_000}})
    time.sleep(0.5)
    assert client.get(f"/status/{kept}").json()["status"] == "IN_QUEUE"


def test_ttl_counts_queue_time(sim: SimulatorServer, client: httpx.Client) -> None:
    sim.set_faults(workers=0)
    job_id = submit(client, {"input": {"prompt": "p"}, "policy": {"ttl": 200}})
    wait_for_404(client, job_id)


def test_runsync_on_job_deleted_by_ttl_is_404(sim: SimulatorServer, client: httpx.Client) -> None:
    sim.set_faults(job_duration_ms=3000)
    body = {"input": {"prompt": "p"}, "policy": {"ttl": 300}}
    response = client.post("/runsync?wait=2000", json=body)
    assert response.status_code == 404


def test_execution_timeout_ends_job_timed_out(sim: SimulatorServer, client: httpx.Client) -> None:
    sim.set_faults(job_duration_ms=2000)
    job_id = submit(client, {"input": {"prompt": "p"}, "policy": {"executionTimeout": 200}})
    job = wait_until(client, job_id)
    assert job["status"] == "TIMED_OUT"
    assert 180 <= job["executionTime"] < 1000
    assert "output" not in job


def test_execution_timeout_status_knob(sim: SimulatorServer, client: httpx.Client) -> None:
    sim.set_faults(job_duration_ms=2000, execution_timeout_status="FAILED")
    job_id = submit(client, {"input": {"prompt": "p"}, "policy": {"executionTimeout": 150}})
    job = wait_until(client, job_id)
    assert job["status"] == "FAILED"
    assert "timeout" in job["error"]


@pytest.mark.parametrize(
    ("policy", "ok"),
    [
        ({"executionTimeout": 4999}, False),
        ({"executionTimeout": 5000}, True),
        ({"ttl": 9999}, False),
        ({"ttl": 10000}, True),
        ({"ttl": 8 * 24 * 3600 * 1000}, False),
        ({"ttl": "soon"}, False),
        ({"lowPriority": "yes"}, False),
    ],
)
def test_policy_bounds(
    sim: SimulatorServer, client: httpx.Client, policy: dict[str, object], ok: bool
) -> None:
    sim.set_faults(min_execution_timeout_ms=5000, min_ttl_ms=10000)
    response = client.post("/run", json={"input": {"prompt": "p"}, "policy": policy})
    assert response.status_code == (200 if ok else 400)
    assert sim.counters()["jobs_created"] == (1 if ok else 0)


def test_a_cancel_is_counted_after_the_ttl_deleted_the_job(
    sim: SimulatorServer, client: httpx.Client
) -> None:
    """The chaos checker proves a moved job was cancelled at RunPod from this count: the job
    itself may be gone by then, deleted by its TTL like any other."""
    sim.set_faults(workers=0)
    job_input = {"prompt": "cancelled, then expired"}
    job_id = submit(client, {"input": job_input, "policy": {"ttl": 300}})
    assert client.post(f"/cancel/{job_id}").json()["status"] == "CANCELLED"
    wait_for_404(client, job_id)
    assert sim.statuses_by_input() == {}
    assert list(sim.counters()["cancelled_by_fingerprint"].values()) == [1]
    assert client.post(f"/cancel/{submit(client)}").status_code == 200
    assert sorted(sim.counters()["cancelled_by_fingerprint"].values()) == [1, 1]
