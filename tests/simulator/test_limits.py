"""Rate limits, body limits and envelope validation (contract 1.3, 4)."""

import time

import httpx
import pytest

from app.simulator.server import SimulatorServer
from tests.simulator.helpers import submit

MB = 1024 * 1024


def test_rate_limit_answers_429_with_retry_after(
    sim: SimulatorServer, client: httpx.Client
) -> None:
    sim.set_faults(rate_limits={"health": 3}, rate_limit_window_s=5)
    codes = [client.get("/health").status_code for _ in range(5)]
    assert codes == [200, 200, 200, 429, 429]
    limited = client.get("/health")
    assert limited.json() == {"error": "rate limit exceeded"}
    assert 1 <= int(limited.headers["Retry-After"]) <= 5
    # Other operations have their own buckets.
    assert client.post("/purge-queue").status_code == 200


def test_rate_limit_window_rolls(sim: SimulatorServer, client: httpx.Client) -> None:
    sim.set_faults(rate_limits={"run": 2}, rate_limit_window_s=0.3)
    for _ in range(2):
        submit(client)
    assert client.post("/run", json={"input": {"prompt": "p"}}).status_code == 429
    assert sim.counters()["jobs_created"] == 2
    time.sleep(0.35)
    assert client.post("/run", json={"input": {"prompt": "p"}}).status_code == 200


def test_status_and_status_sync_share_a_bucket(sim: SimulatorServer, client: httpx.Client) -> None:
    job_id = submit(client)
    sim.set_faults(rate_limits={"status": 2}, min_wait_ms=0)
    assert client.get(f"/status/{job_id}").status_code == 200
    assert client.get(f"/status-sync/{job_id}?wait=1").status_code == 200
    assert client.get(f"/status/{job_id}").status_code == 429
    assert client.get(f"/status-sync/{job_id}?wait=1").status_code == 429
    assert client.get(f"/stream/{job_id}").status_code == 200


def test_retry_after_header_can_be_disabled(sim: SimulatorServer, client: httpx.Client) -> None:
    sim.set_faults(rate_limits={"purge-queue": 1}, retry_after_header=False)
    client.post("/purge-queue")
    limited = client.post("/purge-queue")
    assert limited.status_code == 429
    assert "Retry-After" not in limited.headers


def test_default_purge_queue_limit_is_two_per_window(client: httpx.Client) -> None:
    codes = [client.post("/purge-queue").status_code for _ in range(3)]
    assert codes == [200, 200, 429]


def test_rate_limits_knob_keeps_unmentioned_defaults(sim: SimulatorServer) -> None:
    limits = sim.set_faults(rate_limits={"run": 5})["rate_limits"]
    assert limits["run"] == 5
    assert limits["runsync"] == 2000
    assert limits["cancel"] == 100


def _body_of_size(size: int) -> bytes:
    prefix, suffix = b'{"input": {"prompt": "p", "pad": "', b'"}}'
    return prefix + b"x" * (size - len(prefix) - len(suffix)) + suffix


@pytest.mark.parametrize(
    ("op", "limit"),
    [("run", 10 * MB), ("runsync", 20 * MB)],
)
def test_body_limit_is_413(sim: SimulatorServer, client: httpx.Client, op: str, limit: int) -> None:
    headers = {"Content-Type": "application/json"}
    too_big = client.post(f"/{op}?wait=1", content=_body_of_size(limit + 1), headers=headers)
    assert too_big.status_code == 413
    assert "error" in too_big.json()
    assert sim.counters()["jobs_created"] == 0
    sim.set_faults(job_duration_ms=5000, min_wait_ms=0)
    fits = client.post(f"/{op}?wait=1", content=_body_of_size(limit), headers=headers)
    assert fits.status_code == 200


def test_body_limits_are_configurable(sim: SimulatorServer, client: httpx.Client) -> None:
    sim.set_faults(max_body_run_bytes=100)
    assert client.post("/run", content=_body_of_size(101)).status_code == 413


@pytest.mark.parametrize(
    "body",
    [b"", b"not json", b"[]", b'{"policy": {}}', b'{"input": null}', b'{"input": 1, "policy": 2}'],
)
def test_malformed_envelope_is_400(client: httpx.Client, body: bytes) -> None:
    response = client.post("/run", content=body)
    assert response.status_code == 400
    assert "error" in response.json()


def test_extra_top_level_keys_are_ignored(client: httpx.Client) -> None:
    body = {"input": {"prompt": "p"}, "s3Config": {"bucketName": "b"}, "something": 1}
    assert client.post("/run", json=body).status_code == 200
