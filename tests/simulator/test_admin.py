"""Admin routes: config, counters with fingerprints, and reset."""

import hashlib
import json
import time

import httpx

from app.simulator.server import SimulatorServer
from tests.simulator.helpers import SMALL, submit, wait_until


def test_get_config_lists_knobs(anon: httpx.Client) -> None:
    config = anon.get("/_sim/config").json()
    assert config["workers"] == 4
    assert config["rate_limits"]["run"] == 1000
    assert config["execution_timeout_status"] == "TIMED_OUT"


def test_patch_config_is_validated_and_atomic(sim: SimulatorServer, anon: httpx.Client) -> None:
    url = "/_sim/config"
    bad = [
        {"workers": 3, "fail_rate": 2},
        {"no_such_knob": 1},
        {"error_rates": {"bogus-op": 0.5}},
        {"drop_mode": "explode"},
    ]
    for changes in bad:
        response = anon.patch(url, json=changes)
        assert response.status_code == 400, changes
        assert response.json()["error"] == "invalid config"
    assert anon.patch(url, content=b"[1]").status_code == 400
    assert sim.config.workers == 4
    assert anon.patch(url, json={"workers": 3}).json()["workers"] == 3
    assert sim.config.workers == 3


def test_config_object_is_live(sim: SimulatorServer, client: httpx.Client) -> None:
    sim.config.fail_rate = 1.0
    assert wait_until(client, submit(client))["status"] == "FAILED"


def test_counters_track_calls_responses_and_fingerprints(
    sim: SimulatorServer, client: httpx.Client
) -> None:
    job_input = {"prompt": "twice", **SMALL}
    first = submit(client, {"input": job_input})
    submit(client, {"input": dict(reversed(job_input.items()))})
    submit(client, {"input": {"prompt": "once"}})
    client.get(f"/status/{first}")
    client.get("/status/missing")
    wait_until(client, first)
    counters = sim.counters()
    assert counters["calls"]["run"] == 3
    assert counters["responses"]["run"] == {"200": 3}
    assert counters["responses"]["status"]["404"] == 1
    assert counters["jobs_created"] == 3
    canonical = json.dumps(job_input, sort_keys=True, separators=(",", ":"))
    twice = hashlib.sha256(canonical.encode()).hexdigest()
    assert counters["jobs_by_fingerprint"][twice] == 2
    assert sorted(counters["jobs_by_fingerprint"].values()) == [1, 2]
    assert sum(counters["jobs_by_status"].values()) == 3


def test_counters_record_refused_calls(
    sim: SimulatorServer, client: httpx.Client, anon: httpx.Client
) -> None:
    anon.get("/v2/ep/health")
    client.post("/run", content=b"{}")
    counters = sim.counters()
    assert counters["responses"]["health"] == {"401": 1}
    assert counters["responses"]["run"] == {"400": 1}


def test_reset_forgets_jobs_counters_and_knobs(sim: SimulatorServer, client: httpx.Client) -> None:
    sim.set_faults(job_duration_ms=5000, error_rates={"cancel": 1.0})
    job_id = submit(client)
    sim.config.workers = 1
    sim.reset()
    assert client.get(f"/status/{job_id}").status_code == 404
    counters = sim.counters()
    assert counters["jobs_created"] == 0
    assert counters["calls"] == {"status": 1}
    assert sim.config.job_duration_ms == 50
    assert sim.config.error_rates == {}
    assert sim.config.workers == 4
    assert wait_until(client, submit(client))["status"] == "COMPLETED"


def test_jobs_route_reports_finish_times(
    sim: SimulatorServer, client: httpx.Client, anon: httpx.Client
) -> None:
    done = submit(client)
    wait_until(client, done)
    sim.set_faults(workers=0)
    queued = submit(client)
    finished_at = anon.get("/_sim/jobs").json()["finished_at"]
    assert set(finished_at) == {done}
    assert abs(finished_at[done] - time.time()) < 5
    assert queued not in finished_at


def test_jobs_by_input_groups_statuses_by_fingerprint(
    sim: SimulatorServer, client: httpx.Client
) -> None:
    twice = {"input": {"prompt": "twice", **SMALL}}
    first = submit(client, twice)
    wait_until(client, first)
    client.post(f"/cancel/{submit(client, twice)}")
    submit(client, {"input": {"prompt": "once", **SMALL}})
    groups = sim.statuses_by_input()
    created = sim.counters()["jobs_by_fingerprint"]
    assert set(groups) == set(created)
    assert sorted(map(len, groups.values())) == [1, 2]
    [pair] = [statuses for statuses in groups.values() if len(statuses) == 2]
    assert sorted(pair) == ["CANCELLED", "COMPLETED"]


def test_openapi_schema_builds(anon: httpx.Client) -> None:
    # Warnings are errors under pytest, so a schema problem would surface as a 500 here.
    paths = anon.get("/openapi.json").json()["paths"]
    assert set(paths["/v2/{endpoint_id}/status/{job_id}"]) == {"get", "post"}
    assert "/_sim/config" in paths
