"""Helpers shared by the simulator tests."""

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from app.simulator.config import SimulatorConfig
from app.simulator.server import SimulatorServer

ENDPOINT = "ep-test"
API_KEY = "test-key"
TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"}
SMALL = {"width": 64, "height": 64}


def fast_config() -> SimulatorConfig:
    """Defaults scaled down so the suite runs in seconds; tests change knobs per case."""
    return SimulatorConfig(
        workers=4,
        job_duration_ms=50,
        job_duration_jitter_ms=0,
        random_seed=1234,
        min_ttl_ms=0,
        min_execution_timeout_ms=0,
        webhook_retry_delay_s=0.05,
        webhook_timeout_s=2,
    )


def endpoint_client(server: SimulatorServer, endpoint_id: str) -> httpx.Client:
    """Authenticated client for `/v2/{endpoint_id}/...`; close it (or use it in `with`)."""
    headers = {"Authorization": f"Bearer {API_KEY}"}
    return httpx.Client(base_url=f"{server.base_url}/{endpoint_id}", headers=headers, timeout=30)


def submit(client: httpx.Client, body: dict[str, Any] | None = None, **job_input: Any) -> str:
    """POST /run with `{"input": {...}}` (small image by default) and return the job id."""
    payload = body if body is not None else {"input": {"prompt": "a red fox", **SMALL, **job_input}}
    response = client.post("/run", json=payload)
    assert response.status_code == 200, response.text
    job_id: str = response.json()["id"]
    return job_id


def wait_until(
    client: httpx.Client,
    job_id: str,
    accept: Callable[[dict[str, Any]], bool] = lambda job: job["status"] in TERMINAL,
    timeout: float = 5.0,
) -> dict[str, Any]:
    """Poll /status until `accept(job)`; fail the test on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        response = client.get(f"/status/{job_id}")
        assert response.status_code == 200, response.text
        job: dict[str, Any] = response.json()
        if accept(job):
            return job
        if time.monotonic() > deadline:
            pytest.fail(f"job {job_id} never reached the expected state; last seen {job}")
        time.sleep(0.02)


def wait_for_404(client: httpx.Client, job_id: str, timeout: float = 5.0) -> float:
    """Poll /status until it answers 404; return how long that took."""
    start = time.monotonic()
    while client.get(f"/status/{job_id}").status_code != 404:
        if time.monotonic() - start > timeout:
            pytest.fail(f"job {job_id} did not expire")
        time.sleep(0.02)
    return time.monotonic() - start


@dataclass
class WebhookReceiver:
    """A tiny HTTP server on 127.0.0.1 that records webhook POSTs."""

    url: str
    # Status codes to answer, in order; once exhausted every request gets 200.
    replies: list[int] = field(default_factory=list)
    bodies: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def wait_for(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.bodies) >= count:
                    return list(self.bodies)
            time.sleep(0.02)
        pytest.fail(f"expected {count} webhook calls, got {len(self.bodies)}")
