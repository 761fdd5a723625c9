"""`GET /models`, the queue statistics' routes and the per-route gauges of `/metrics`, on two
routes (one with two endpoints) served by the simulator's endpoints: the health they show is
what the simulator reports at the dispatcher's last check, and a throttled endpoint's circuit
shows open once it has tripped."""

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.accounts.scopes import Scope
from app.accounts.service import KeyOptions, create_key
from app.jobs.dispatch import Dispatcher
from app.simulator.server import SimulatorServer
from tests.stack.http_api import API, assert_problem, bearer
from tests.stack.inprocess_api import ApiFactory, RunningApi

MODELS = f"{API}/models"
APP = "https://app.example.com"
FLUX_KEY = "flux-key-that-must-not-show"


@pytest.fixture
async def api(
    api_factory: ApiFactory, simulator: SimulatorServer, tmp_path: Path
) -> AsyncIterator[RunningApi]:
    """Production settings; `sdxl` (default) on ep-a and ep-b, `flux` on ep-flux, whose key
    is in a variable of its own."""
    routes = tmp_path / "routes.toml"
    routes.write_text(
        f"""
[routes.flux]
kind = "flux"
price_per_second = 0.00076
defaults = {{ num_inference_steps = 28, guidance_scale = 3.5 }}
bounds = {{ max_images = 1 }}
[[routes.flux.endpoints]]
url = "{simulator.base_url}/ep-flux"
api_key_env = "FLUX_RUNPOD_KEY"

[routes.sdxl]
default = true
fallbacks = ["flux"]
max_queue_delay = 90
bounds = {{ max_width = 1536, max_steps = 60 }}
[[routes.sdxl.endpoints]]
url = "{simulator.base_url}/ep-a"
weight = 2
[[routes.sdxl.endpoints]]
url = "{simulator.base_url}/ep-b"
"""
    )
    simulator.set_endpoint("ep-a", workers=3, job_duration_ms=30_000)
    simulator.set_endpoint("ep-b", workers=2, throttled=True)
    simulator.set_endpoint("ep-flux", workers=1)
    env = {"ENVIRONMENT": "production", "ROUTES_FILE": str(routes), "FLUX_RUNPOD_KEY": FLUX_KEY}
    async with api_factory(**env) as running:
        yield running


def headers(api: RunningApi, **options: Any) -> dict[str, str]:
    with api.engine.db.session() as session:
        _, plaintext = create_key(session, name="caller", options=KeyOptions(**options))
    return bearer(plaintext)


async def models(api: RunningApi, auth: dict[str, str]) -> dict[str, dict[str, Any]]:
    response = await api.client.get(MODELS, headers=auth)
    assert response.status_code == 200, response.text
    for secret in (FLUX_KEY, "FLUX_RUNPOD_KEY", "test-key", "127.0.0.1", "http"):
        assert secret not in response.text
    return {model["name"]: model for model in response.json()["models"]}


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


def simulated_workers(simulator: SimulatorServer, endpoint_id: str) -> dict[str, int]:
    workers: dict[str, int] = httpx.get(
        f"{simulator.base_url}/{endpoint_id}/health", headers=bearer("test-key")
    ).json()["workers"]
    return workers


def endpoints(model: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {endpoint["id"]: endpoint for endpoint in model["endpoints"]}


async def test_models_lists_the_routes_and_their_endpoints_before_any_check(
    api: RunningApi,
) -> None:
    response = await api.client.get(MODELS, headers=headers(api))
    assert [model["name"] for model in response.json()["models"]] == ["sdxl", "flux"]
    listed = await models(api, headers(api))
    sdxl, flux = listed["sdxl"], listed["flux"]
    assert (sdxl["default"], sdxl["kind"], sdxl["fallbacks"]) == (True, "sdxl", ["flux"])
    assert sdxl["price_per_second"] == api.engine.settings.gpu_price_per_second
    assert sdxl["max_queue_delay_s"] == 90
    assert sdxl["bounds"] == {
        "max_width": 1536,
        "max_height": 2048,
        "max_steps": 60,
        "max_images": 4,
    }
    assert sdxl["defaults"]["num_inference_steps"] == 25
    assert (flux["default"], flux["kind"], flux["price_per_second"]) == (False, "flux", 0.00076)
    assert (flux["defaults"]["num_inference_steps"], flux["defaults"]["guidance_scale"]) == (
        28,
        3.5,
    )
    assert flux["bounds"]["max_images"] == 1
    assert [(e["id"], e["weight"]) for e in sdxl["endpoints"]] == [("ep-a", 2.0), ("ep-b", 1.0)]
    never = endpoints(sdxl)["ep-a"]
    assert never["checked_at"] is None
    assert never["max_in_flight"] is None
    assert set(never["workers"].values()) == {None}
    assert never["runpod_jobs"] == {"in_queue": None, "in_progress": None}
    assert (never["circuit"], never["retry_at"], never["trips"]) == ("closed", None, 0)


async def test_health_follows_the_simulator_and_a_throttled_endpoint_trips(
    api: RunningApi, simulator: SimulatorServer
) -> None:
    auth = headers(api)
    accepted = await api.client.post(
        f"{API}/generate", json={"prompt": "a red fox", "model": "sdxl"}, headers=auth
    )
    assert accepted.status_code == 202, accepted.text
    # ep-b has no worker that can run while the job waits: it trips, and ep-a takes the job.
    await Dispatcher(api.engine).check_due_endpoints()
    dispatcher = Dispatcher(api.engine)
    await dispatcher.dispatch_round()
    await until(lambda: simulator.counters("ep-a")["calls"].get("run", 0) == 1)
    await until(lambda: simulated_workers(simulator, "ep-a")["running"] == 1)
    await Dispatcher(api.engine).check_due_endpoints()

    listed = await models(api, auth)
    sdxl = endpoints(listed["sdxl"])
    a, b, flux = sdxl["ep-a"], sdxl["ep-b"], endpoints(listed["flux"])["ep-flux"]
    assert (listed["sdxl"]["pending_jobs"], listed["flux"]["pending_jobs"]) == (0, 0)
    assert a["queued_jobs"] + a["running_jobs"] == 1
    assert listed["sdxl"]["waiting_jobs"] == a["queued_jobs"]
    for endpoint in (a, b, flux):
        health = await api.engine.client(endpoint["id"]).health()
        assert endpoint["workers"] == {
            state: health.workers.get(state) for state in endpoint["workers"]
        }, endpoint["id"]
        assert endpoint["runpod_jobs"] == {
            "in_queue": health.job_count("inQueue"),
            "in_progress": health.job_count("inProgress"),
        }
        assert endpoint["checked_at"] is not None
    assert (a["workers"]["running"], a["runpod_jobs"]["in_progress"]) == (1, 1)
    assert (b["workers"]["throttled"], b["workers"]["running"]) == (2, 0)
    assert flux["workers"]["throttled"] == 0
    assert a["max_in_flight"] >= 1

    # ep-b has no worker that can run while a job waits: out of rotation until retry_at.
    assert (a["circuit"], flux["circuit"]) == ("closed", "closed")
    assert b["circuit"] == "open"
    assert b["circuit_reason"] == "no worker can run (2 throttled) while jobs wait"
    assert b["trips"] == 1
    assert b["retry_at"] is not None
    assert b["retry_at"] > b["circuit_since"]

    admin = headers(api, is_admin=True)
    stats = await api.client.get(f"{API}/queue/stats", headers=admin)
    assert stats.status_code == 200, stats.text
    body = stats.json()
    assert set(body) >= {"jobs_by_status", "queues", "runpod_health", "stall_reason"}
    assert body["queues"]["waiting"] + body["queues"]["running"] == 1
    routes = {route["name"]: route for route in body["routes"]}
    assert routes["sdxl"]["pending_jobs"] == 0
    assert endpoints(routes["sdxl"])["ep-b"]["circuit"] == "open"

    scraped = (await api.client.get("/metrics")).text
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(scraped)
        for sample in family.samples
    }

    def gauge(name: str, **labels: str) -> float:
        return samples[name, tuple(sorted(labels.items()))]

    assert gauge("podrelay_route_waiting_jobs", route="sdxl") == a["queued_jobs"]
    assert gauge("podrelay_route_pending_jobs", route="flux") == 0
    assert gauge("podrelay_endpoint_circuit_open", route="sdxl", endpoint="ep-b") == 1
    assert gauge("podrelay_endpoint_circuit_open", route="sdxl", endpoint="ep-a") == 0
    assert gauge("podrelay_endpoint_workers", route="sdxl", endpoint="ep-b", state="throttled") == 2
    assert gauge("podrelay_endpoint_workers", route="sdxl", endpoint="ep-a", state="running") == 1
    assert (
        gauge("podrelay_endpoint_jobs", route="sdxl", endpoint="ep-a", status="queued")
        == (a["queued_jobs"])
    )
    assert gauge("podrelay_endpoint_max_in_flight", route="flux", endpoint="ep-flux") >= 1
    assert FLUX_KEY not in scraped


async def test_any_authenticated_caller_reads_the_models(api: RunningApi) -> None:
    """A key without `jobs:read`, a publishable key from its origin and a session token all
    read it; without a credential, or from another origin, it is refused."""
    images_only = headers(api, scopes=frozenset({Scope.IMAGES_READ}))
    publishable = headers(api, origins=frozenset({APP}))
    minted = await api.client.post(
        "/api/v1/tokens", json={"user": "u1", "scopes": ["jobs:create"]}, headers=headers(api)
    )
    assert minted.status_code == 201, minted.text
    token = bearer(minted.json()["token"])
    for auth in (images_only, {**publishable, "Origin": APP}, token):
        assert list(await models(api, auth)) == ["sdxl", "flux"]
    assert_problem(await api.client.get(MODELS), 401, "missing_api_key")
    other = {**publishable, "Origin": "https://elsewhere.example"}
    assert_problem(await api.client.get(MODELS, headers=other), 403, "origin_not_allowed")
    assert_problem(
        await api.client.get(f"{API}/queue/stats", headers=images_only), 403, "admin_required"
    )
