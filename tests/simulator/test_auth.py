"""Auth forms, 401s and 404s (contract 1.1, 1.2, 3)."""

import httpx
import pytest

from app.simulator.server import SimulatorServer
from tests.simulator.helpers import API_KEY, ENDPOINT, SMALL, submit

BODY = {"input": {"prompt": "p", **SMALL}}


def _post_run(anon: httpx.Client, headers: dict[str, str]) -> httpx.Response:
    return anon.post(f"/v2/{ENDPOINT}/run", json=BODY, headers=headers)


@pytest.mark.parametrize("header", [f"Bearer {API_KEY}", API_KEY, f"bearer  {API_KEY}"])
def test_configured_key_is_accepted_as_bearer_or_bare(
    sim: SimulatorServer, anon: httpx.Client, header: str
) -> None:
    sim.set_faults(api_key=API_KEY)
    response = _post_run(anon, {"Authorization": header})
    assert response.status_code == 200
    assert response.json()["status"] == "IN_QUEUE"


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": ""}, {"Authorization": "Bearer"}, {"Authorization": "Bearer nope"}],
)
def test_wrong_or_missing_key_is_401_json(
    sim: SimulatorServer, anon: httpx.Client, headers: dict[str, str]
) -> None:
    sim.set_faults(api_key=API_KEY)
    response = _post_run(anon, headers)
    assert response.status_code == 401
    assert "error" in response.json()
    assert sim.counters()["jobs_created"] == 0


def test_without_configured_key_any_nonempty_key_passes(anon: httpx.Client) -> None:
    assert _post_run(anon, {"Authorization": "Bearer whatever"}).status_code == 200
    assert _post_run(anon, {"Authorization": "anything"}).status_code == 200
    assert _post_run(anon, {}).status_code == 401
    health = anon.get(f"/v2/{ENDPOINT}/health", headers={"Authorization": "Bearer"})
    assert health.status_code == 401


def test_every_operation_requires_auth(anon: httpx.Client) -> None:
    base = f"/v2/{ENDPOINT}"
    for method, path in [
        ("GET", "/status/x"),
        ("POST", "/status/x"),
        ("GET", "/status-sync/x"),
        ("GET", "/stream/x"),
        ("POST", "/cancel/x"),
        ("POST", "/retry/x"),
        ("POST", "/purge-queue"),
        ("GET", "/health"),
        ("POST", "/runsync"),
    ]:
        assert anon.request(method, base + path).status_code == 401, path


def test_unknown_endpoint_is_404(sim: SimulatorServer, client: httpx.Client) -> None:
    sim.set_faults(endpoint_ids=[ENDPOINT])
    assert client.get("/health").status_code == 200
    other = client.post(f"{sim.base_url}/other-endpoint/run", json=BODY)
    assert other.status_code == 404
    assert "error" in other.json()


def test_unknown_job_is_404_with_json_error(client: httpx.Client) -> None:
    for method, path in [
        ("GET", "/status/no-such-job"),
        ("POST", "/status/no-such-job"),
        ("GET", "/status-sync/no-such-job?wait=1000"),
        ("GET", "/stream/no-such-job"),
        ("POST", "/cancel/no-such-job"),
        ("POST", "/retry/no-such-job"),
    ]:
        response = client.request(method, path)
        assert response.status_code == 404, path
        assert response.json() == {"error": "job not found"}


def test_job_is_scoped_to_its_endpoint(sim: SimulatorServer, client: httpx.Client) -> None:
    job_id = submit(client)
    assert client.get(f"/status/{job_id}").status_code == 200
    assert client.get(f"{sim.base_url}/another/status/{job_id}").status_code == 404
