"""Job lifecycle, ids, timing fields, progress, stream, runsync and status-sync (contract 1)."""

import re
import time

import httpx

from app.simulator.server import SimulatorServer
from tests.simulator.helpers import SMALL, submit, wait_until

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"


def test_run_answers_in_queue_with_u1_id(client: httpx.Client) -> None:
    response = client.post("/run", json={"input": {"prompt": "p", **SMALL}})
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "IN_QUEUE"
    assert re.fullmatch(UUID + "-u1", body["id"])


def test_runsync_id_has_sync_prefix(client: httpx.Client) -> None:
    body = client.post("/runsync", json={"input": {"prompt": "p", **SMALL}}).json()
    assert re.fullmatch("sync-" + UUID + "-u1", body["id"])


def test_full_lifecycle_reports_timing_and_worker(
    sim: SimulatorServer, client: httpx.Client
) -> None:
    sim.set_faults(workers=1, job_duration_ms=300)
    first = submit(client)
    second = submit(client)
    queued = client.get(f"/status/{second}").json()
    assert queued == {"id": second, "status": "IN_QUEUE"}
    running = wait_until(client, first, lambda j: j["status"] == "IN_PROGRESS", timeout=2)
    assert isinstance(running["workerId"], str)
    assert running["workerId"]
    done = wait_until(client, second)
    assert done["status"] == "COMPLETED"
    # The second job waited for the only worker, so its queue time covers the first run.
    assert done["delayTime"] >= 250
    assert 280 <= done["executionTime"] <= 1000
    assert done["workerId"] == running["workerId"]
    assert done["output"]["images"]


def test_progress_output_while_in_progress(sim: SimulatorServer, client: httpx.Client) -> None:
    sim.set_faults(job_duration_ms=1000)
    job_id = submit(client, num_inference_steps=20)
    job = wait_until(client, job_id, lambda j: "output" in j, timeout=3)
    assert job["status"] == "IN_PROGRESS"
    progress = job["output"]
    assert progress["total_steps"] == 20
    assert 1 <= progress["step"] < 20
    assert progress["progress"] == round(progress["step"] / 20, 4)


def test_progress_can_be_switched_off(sim: SimulatorServer, client: httpx.Client) -> None:
    sim.set_faults(job_duration_ms=400, progress_updates=False)
    job_id = submit(client, num_inference_steps=4)
    time.sleep(0.25)
    job = client.get(f"/status/{job_id}").json()
    assert job["status"] == "IN_PROGRESS"
    assert "output" not in job
    assert client.get(f"/stream/{job_id}").json()["stream"] == []


def test_stream_chunks_are_consumed_on_read(sim: SimulatorServer, client: httpx.Client) -> None:
    sim.set_faults(job_duration_ms=600)
    job_id = submit(client, num_inference_steps=6)
    time.sleep(0.35)
    first = client.get(f"/stream/{job_id}").json()
    assert first["status"] == "IN_PROGRESS"
    steps = [chunk["output"]["step"] for chunk in first["stream"]]
    assert steps == list(range(1, len(steps) + 1))
    assert steps
    wait_until(client, job_id)
    rest = client.post(f"/stream/{job_id}").json()
    assert rest["status"] == "COMPLETED"
    assert [c["output"]["step"] for c in rest["stream"]] == list(range(len(steps) + 1, 7))
    assert client.get(f"/stream/{job_id}").json() == {"status": "COMPLETED", "stream": []}


def test_runsync_returns_result_within_wait(client: httpx.Client) -> None:
    body = client.post("/runsync?wait=5000", json={"input": {"prompt": "p", **SMALL}}).json()
    assert body["status"] == "COMPLETED"
    assert body["output"]["image_url"].endswith(".png")
    assert {"delayTime", "executionTime", "workerId"} <= body.keys()


def test_runsync_returns_id_and_current_status_after_wait(
    sim: SimulatorServer, client: httpx.Client
) -> None:
    sim.set_faults(job_duration_ms=3000)
    start = time.monotonic()
    # wait=10 is clamped up to the 1000 ms minimum.
    body = client.post("/runsync?wait=10", json={"input": {"prompt": "p", **SMALL}}).json()
    elapsed = time.monotonic() - start
    assert 0.9 <= elapsed < 2.5
    assert body["status"] == "IN_PROGRESS"
    assert body["id"].startswith("sync-")
    assert client.get(f"/status/{body['id']}").json()["status"] == "IN_PROGRESS"


def test_runsync_rejects_non_integer_wait(client: httpx.Client) -> None:
    response = client.post("/runsync?wait=soon", json={"input": {"prompt": "p"}})
    assert response.status_code == 400
    assert "error" in response.json()


def test_status_sync_waits_for_the_end(sim: SimulatorServer, client: httpx.Client) -> None:
    sim.set_faults(job_duration_ms=400, min_wait_ms=0)
    job_id = submit(client)
    early = client.get(f"/status-sync/{job_id}?wait=100").json()
    assert early["status"] in {"IN_QUEUE", "IN_PROGRESS"}
    done = client.post(f"/status-sync/{job_id}?wait=5000").json()
    assert done["status"] == "COMPLETED"
    assert done["id"] == job_id


def test_low_priority_jobs_run_after_normal_ones(
    sim: SimulatorServer, client: httpx.Client
) -> None:
    sim.set_faults(workers=1, job_duration_ms=200)
    blocker = submit(client)
    low = submit(client, {"input": {"prompt": "low", **SMALL}, "policy": {"lowPriority": True}})
    normal = submit(client)
    wait_until(client, blocker)
    wait_until(client, normal, lambda j: j["status"] == "IN_PROGRESS", timeout=2)
    assert client.get(f"/status/{low}").json()["status"] == "IN_QUEUE"
    assert wait_until(client, low)["status"] == "COMPLETED"


def test_worker_pool_limits_concurrency(sim: SimulatorServer, client: httpx.Client) -> None:
    sim.set_faults(workers=2, job_duration_ms=400)
    ids = [submit(client) for _ in range(3)]
    time.sleep(0.15)
    statuses = [client.get(f"/status/{i}").json()["status"] for i in ids]
    assert statuses == ["IN_PROGRESS", "IN_PROGRESS", "IN_QUEUE"]
    health = client.get("/health").json()
    assert health["workers"]["running"] == 2
    assert health["jobs"]["inQueue"] == 1


def test_cold_start_delays_first_job_only(sim: SimulatorServer, client: httpx.Client) -> None:
    sim.set_faults(workers=1, cold_start_ms=300)
    first = submit(client)
    booting = client.get("/health").json()["workers"]
    assert booting["initializing"] == 1
    cold = wait_until(client, first)
    warm = wait_until(client, submit(client))
    assert cold["delayTime"] >= 280
    assert warm["delayTime"] < 150


def test_worker_goes_cold_after_idle_timeout(sim: SimulatorServer, client: httpx.Client) -> None:
    sim.set_faults(workers=1, cold_start_ms=200, worker_idle_timeout_s=0.1)
    wait_until(client, submit(client))
    time.sleep(0.2)
    again = wait_until(client, submit(client))
    assert again["delayTime"] >= 180


def test_job_durations_follow_mean_and_jitter(sim: SimulatorServer, client: httpx.Client) -> None:
    sim.set_faults(workers=8, job_duration_ms=200, job_duration_jitter_ms=100)
    ids = [submit(client) for _ in range(8)]
    times = [wait_until(client, i)["executionTime"] for i in ids]
    assert all(90 <= t <= 400 for t in times), times
    assert len(set(times)) > 1
