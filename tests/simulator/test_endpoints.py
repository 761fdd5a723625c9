"""Many endpoints in one simulator: their own knobs and workers, throttling, counters, admin API."""

from collections.abc import Iterator

import httpx
import pytest

from app.simulator.server import SimulatorServer
from tests.simulator.helpers import endpoint_client, submit, wait_until

SLOW = 5000  # ms: a job that certainly runs until the test ends


@pytest.fixture
def ep_a(sim: SimulatorServer) -> Iterator[httpx.Client]:
    with endpoint_client(sim, "ep-a") as client:
        yield client


@pytest.fixture
def ep_b(sim: SimulatorServer) -> Iterator[httpx.Client]:
    with endpoint_client(sim, "ep-b") as client:
        yield client


def status(client: httpx.Client, job_id: str) -> str:
    response = client.get(f"/status/{job_id}")
    assert response.status_code == 200, response.text
    value: str = response.json()["status"]
    return value


def test_endpoints_have_their_own_output_and_failures(
    sim: SimulatorServer, client: httpx.Client, ep_a: httpx.Client, ep_b: httpx.Client
) -> None:
    sim.set_endpoint("ep-a", output_shape="comfyui")
    sim.set_endpoint("ep-b", output_shape="public", fail_rate=1.0)
    comfy = wait_until(ep_a, submit(ep_a))
    failed = wait_until(ep_b, submit(ep_b))
    plain = wait_until(client, submit(client))
    assert comfy["status"] == "COMPLETED"
    assert comfy["output"]["images"][0]["type"] == "s3_url"
    assert failed["status"] == "FAILED"
    assert "CUDA out of memory" in failed["error"]
    assert plain["status"] == "COMPLETED"
    assert plain["output"]["image_url"] == plain["output"]["images"][0]


def test_endpoints_have_their_own_workers(
    sim: SimulatorServer, client: httpx.Client, ep_a: httpx.Client, ep_b: httpx.Client
) -> None:
    sim.set_endpoint("ep-a", workers=1, job_duration_ms=SLOW)
    sim.set_endpoint("ep-b", workers=3, job_duration_ms=SLOW)
    for endpoint in (ep_a, ep_b):
        for _ in range(3):
            submit(endpoint)
    a, b = ep_a.get("/health").json(), ep_b.get("/health").json()
    assert (a["jobs"]["inProgress"], a["jobs"]["inQueue"], a["workers"]["running"]) == (1, 2, 1)
    assert (b["jobs"]["inProgress"], b["jobs"]["inQueue"], b["workers"]["running"]) == (3, 0, 3)
    # Endpoints nobody configured share the global pool of 4, which no job took.
    shared = client.get("/health").json()
    assert shared["workers"]["running"] == 0
    assert wait_until(client, submit(client))["status"] == "COMPLETED"


def test_unconfigured_endpoints_share_one_pool_as_before(
    sim: SimulatorServer, client: httpx.Client, ep_a: httpx.Client
) -> None:
    sim.set_faults(workers=1, job_duration_ms=SLOW)
    running = submit(ep_a)
    waiting = submit(client)
    assert status(ep_a, running) == "IN_PROGRESS"
    assert status(client, waiting) == "IN_QUEUE"
    assert client.get("/health").json()["workers"]["running"] == 1
    assert sim.endpoints() == {}


def test_throttled_endpoint_holds_new_jobs_until_unthrottled(
    sim: SimulatorServer, client: httpx.Client, ep_a: httpx.Client
) -> None:
    sim.set_endpoint("ep-a", workers=2, job_duration_ms=SLOW)
    running = submit(ep_a)
    view = sim.set_endpoint("ep-a", throttled=True)
    assert view["overrides"] == {"workers": 2, "job_duration_ms": SLOW, "throttled": True}
    held = [submit(ep_a), submit(ep_a)]
    health = ep_a.get("/health").json()
    assert health["jobs"]["inQueue"] == 2
    assert health["workers"] == {
        "idle": 0,
        "initializing": 0,
        "ready": 0,
        "running": 1,  # the job it had before is still finishing
        "throttled": 1,
        "unhealthy": 0,
    }
    assert status(ep_a, running) == "IN_PROGRESS"
    ep_a.post(f"/cancel/{running}")
    assert ep_a.get("/health").json()["workers"]["throttled"] == 2
    assert [status(ep_a, job_id) for job_id in held] == ["IN_QUEUE", "IN_QUEUE"]
    assert wait_until(client, submit(client))["status"] == "COMPLETED"  # others run on

    sim.set_endpoint("ep-a", throttled=None, job_duration_ms=50)
    assert [wait_until(ep_a, job_id)["status"] for job_id in held] == ["COMPLETED"] * 2
    workers = ep_a.get("/health").json()["workers"]
    assert workers["throttled"] == 0
    assert workers["idle"] == 2


def test_unhealthy_globally_but_not_where_overridden(
    sim: SimulatorServer, client: httpx.Client, ep_a: httpx.Client
) -> None:
    sim.set_endpoint("ep-a", unhealthy=False)
    sim.set_faults(unhealthy=True)
    held = submit(client)
    assert wait_until(ep_a, submit(ep_a))["status"] == "COMPLETED"
    health = client.get("/health").json()
    assert health["workers"]["unhealthy"] == 4
    assert health["workers"]["running"] == 0
    assert status(client, held) == "IN_QUEUE"
    sim.set_faults(unhealthy=False)
    assert wait_until(client, held)["status"] == "COMPLETED"


def test_cancel_of_a_job_held_by_a_throttled_endpoint(
    sim: SimulatorServer, ep_a: httpx.Client
) -> None:
    sim.set_endpoint("ep-a", throttled=True)
    job_id = submit(ep_a)
    assert ep_a.post(f"/cancel/{job_id}").json() == {"id": job_id, "status": "CANCELLED"}
    assert status(ep_a, job_id) == "CANCELLED"
    sim.set_endpoint("ep-a", throttled=False)
    assert wait_until(ep_a, submit(ep_a))["status"] == "COMPLETED"  # the worker had room
    job = ep_a.get(f"/status/{job_id}").json()
    assert job["status"] == "CANCELLED"
    assert "workerId" not in job


def test_counters_per_endpoint_sum_to_the_totals(
    sim: SimulatorServer, anon: httpx.Client, ep_a: httpx.Client, ep_b: httpx.Client
) -> None:
    sim.set_endpoint("ep-a", workers=1)
    finished = [wait_until(ep_a, submit(ep_a, prompt=f"a{i}")) for i in range(2)]
    ep_b.get("/status/missing")
    wait_until(ep_b, submit(ep_b, prompt="b"))
    a, b, total = sim.counters("ep-a"), sim.counters("ep-b"), sim.counters()
    assert a["calls"]["run"] == 2
    assert a["jobs_created"] == 2
    assert a["jobs_by_status"]["COMPLETED"] == 2
    assert b["responses"]["status"]["404"] == 1
    assert b["jobs_created"] == 1
    assert total["jobs_created"] == 3
    assert total["calls"]["run"] == a["calls"]["run"] + b["calls"]["run"]
    assert total["jobs_by_status"]["COMPLETED"] == 3
    assert sim.counters("never-called")["jobs_created"] == 0
    assert len(sim.statuses_by_input("ep-a")) == 2
    assert len(sim.statuses_by_input()) == 3
    listed = anon.get("/_sim/jobs", params={"endpoint": "ep-a"}).json()["finished_at"]
    assert set(listed) == {job["id"] for job in finished}


def test_endpoint_admin_api(sim: SimulatorServer, anon: httpx.Client) -> None:
    url = "/_sim/endpoints/ep-a"
    bad = [
        ({"api_key": "k"}, ["api_key"]),
        ({"no_such_knob": 1}, ["no_such_knob"]),
        ({"workers": -1}, ["workers"]),
        ({"error_rates": {"bogus-op": 0.5}}, ["error_rates"]),
    ]
    for knobs, loc in bad:
        response = anon.put(url, json=knobs)
        assert response.status_code == 400, knobs
        assert response.json()["error"] == "invalid endpoint knobs"
        assert response.json()["details"][0]["loc"] == loc
    assert anon.put("/_sim/endpoints/_x", json={}).status_code == 400
    assert anon.patch(url, content=b"[1]").status_code == 400
    assert sim.endpoints() == {}

    sim.replace_endpoint("ep-a", workers=1, output_shape="a1111")
    view = sim.set_endpoint("ep-a", cold_start_ms=200)
    assert view["overrides"] == {"workers": 1, "output_shape": "a1111", "cold_start_ms": 200}
    view = sim.replace_endpoint("ep-a", workers=3)
    assert view["overrides"] == {"workers": 3}
    assert view["knobs"]["output_shape"] == "worker-sdxl"
    sim.set_faults(job_duration_ms=777)  # a knob it does not override follows the global one
    assert sim.endpoints()["ep-a"]["knobs"]["job_duration_ms"] == 777
    unconfigured = anon.get("/_sim/endpoints/ep-z").json()
    assert (unconfigured["configured"], unconfigured["overrides"]) == (False, {})
    assert unconfigured["knobs"]["workers"] == 4
    sim.delete_endpoint("ep-a")
    assert anon.delete(url).status_code == 404
    assert sim.endpoints() == {}


def test_queued_jobs_follow_their_endpoint_when_it_is_configured_or_deleted(
    sim: SimulatorServer, ep_a: httpx.Client
) -> None:
    sim.set_faults(workers=0)
    first = submit(ep_a)  # queued at the shared pool, which has no worker
    sim.set_endpoint("ep-a", workers=1)
    assert wait_until(ep_a, first)["status"] == "COMPLETED"
    sim.set_endpoint("ep-a", throttled=True)
    second = submit(ep_a)
    sim.delete_endpoint("ep-a")
    assert status(ep_a, second) == "IN_QUEUE"
    sim.set_faults(workers=1)
    assert wait_until(ep_a, second)["status"] == "COMPLETED"
    sim.set_endpoint("ep-a", workers=1, job_duration_ms=SLOW)
    running = submit(ep_a)
    sim.delete_endpoint("ep-a")  # the job runs on where it started
    assert status(ep_a, running) == "IN_PROGRESS"
    assert ep_a.get("/health").json()["workers"]["running"] == 0  # the shared pool's count
    ep_a.post(f"/cancel/{running}")
    sim.set_faults(job_duration_ms=50)
    assert wait_until(ep_a, submit(ep_a))["status"] == "COMPLETED"
