"""cancel, retry, purge-queue and health (contract 1.2, 1.6)."""

import time

import httpx

from app.simulator.server import SimulatorServer
from tests.simulator.helpers import submit, wait_until


def test_cancel_queued_job(sim: SimulatorServer, client: httpx.Client) -> None:
    sim.set_faults(workers=0)
    job_id = submit(client)
    response = client.post(f"/cancel/{job_id}")
    assert response.json() == {"id": job_id, "status": "CANCELLED"}
    sim.set_faults(workers=1)
    time.sleep(0.15)
    job = client.get(f"/status/{job_id}").json()
    assert job["status"] == "CANCELLED"
    assert "workerId" not in job
    assert "output" not in job


def test_cancel_running_job_frees_the_worker(sim: SimulatorServer, client: httpx.Client) -> None:
    sim.set_faults(workers=1, job_duration_ms=2000)
    running = submit(client)
    waiting = submit(client)
    wait_until(client, running, lambda j: j["status"] == "IN_PROGRESS", timeout=2)
    assert client.post(f"/cancel/{running}").json() == {"id": running, "status": "CANCELLED"}
    time.sleep(0.1)
    assert client.get(f"/status/{running}").json()["status"] == "CANCELLED"
    assert client.get(f"/status/{waiting}").json()["status"] == "IN_PROGRESS"


def test_cancel_terminal_job_leaves_it_alone(client: httpx.Client) -> None:
    job_id = submit(client)
    done = wait_until(client, job_id)
    response = client.post(f"/cancel/{job_id}")
    assert response.status_code == 200
    assert response.json() == done
    assert client.get(f"/status/{job_id}").json()["status"] == "COMPLETED"


def test_retry_failed_job_keeps_id_and_clears_output(
    sim: SimulatorServer, client: httpx.Client
) -> None:
    sim.set_faults(fail_rate=1.0)
    job_id = submit(client)
    failed = wait_until(client, job_id)
    assert failed["status"] == "FAILED"
    assert failed["error"]
    sim.set_faults(fail_rate=0.0, job_duration_ms=300)
    assert client.post(f"/retry/{job_id}").json() == {"id": job_id, "status": "IN_QUEUE"}
    again = client.get(f"/status/{job_id}").json()
    assert again["status"] in {"IN_QUEUE", "IN_PROGRESS"}
    assert "error" not in again
    done = wait_until(client, job_id)
    assert done["status"] == "COMPLETED"
    assert done["output"]["images"]
    assert client.get("/health").json()["jobs"]["retried"] == 1


def test_retry_timed_out_job(sim: SimulatorServer, client: httpx.Client) -> None:
    sim.set_faults(job_duration_ms=1000)
    job_id = submit(client, {"input": {"prompt": "p"}, "policy": {"executionTimeout": 100}})
    assert wait_until(client, job_id)["status"] == "TIMED_OUT"
    assert client.post(f"/retry/{job_id}").json()["status"] == "IN_QUEUE"


def test_retry_is_refused_for_other_states(sim: SimulatorServer, client: httpx.Client) -> None:
    completed = submit(client)
    wait_until(client, completed)
    sim.set_faults(workers=0)
    queued = submit(client)
    for job_id in (completed, queued):
        response = client.post(f"/retry/{job_id}")
        assert response.status_code == 400
        assert "error" in response.json()
    assert client.get(f"/status/{completed}").json()["status"] == "COMPLETED"


def test_retry_is_refused_once_expired(sim: SimulatorServer, client: httpx.Client) -> None:
    sim.set_faults(fail_rate=1.0, retention_run_s=0.1)
    job_id = submit(client)
    wait_until(client, job_id)
    time.sleep(0.2)
    assert client.post(f"/retry/{job_id}").status_code == 404


def test_purge_queue_removes_only_queued_jobs(sim: SimulatorServer, client: httpx.Client) -> None:
    sim.set_faults(workers=1, job_duration_ms=1000)
    running = submit(client)
    wait_until(client, running, lambda j: j["status"] == "IN_PROGRESS", timeout=2)
    queued = [submit(client) for _ in range(3)]
    assert client.post("/purge-queue").json() == {"removed": 3, "status": "completed"}
    for job_id in queued:
        assert client.get(f"/status/{job_id}").status_code == 404
    assert client.get(f"/status/{running}").json()["status"] == "IN_PROGRESS"
    assert client.post("/purge-queue").json() == {"removed": 0, "status": "completed"}


def test_health_counts_jobs_and_workers(sim: SimulatorServer, client: httpx.Client) -> None:
    sim.set_faults(workers=2, job_duration_ms=50)
    wait_until(client, submit(client))
    sim.set_faults(fail_rate=1.0)
    wait_until(client, submit(client))
    sim.set_faults(fail_rate=0.0, job_duration_ms=2000)
    submit(client)
    submit(client)
    submit(client)
    time.sleep(0.1)
    health = client.get("/health").json()
    assert health["jobs"] == {
        "completed": 1,
        "failed": 1,
        "inProgress": 2,
        "inQueue": 1,
        "retried": 0,
    }
    workers = health["workers"]
    assert set(workers) == {"idle", "initializing", "ready", "running", "throttled", "unhealthy"}
    assert workers["running"] == 2
    assert workers["idle"] == 0
    assert all(isinstance(v, int) for v in workers.values())
