"""Webhook body, retries and fault knobs (contract 2)."""

import time

import httpx

from app.simulator.server import SimulatorServer
from tests.simulator.helpers import SMALL, WebhookReceiver, submit, wait_until


def _with_hook(url: str, **job_input: object) -> dict[str, object]:
    return {"input": {"prompt": "hooked", **SMALL, **job_input}, "webhook": url}


def test_completed_job_posts_full_job_object(
    sim: SimulatorServer, client: httpx.Client, receiver: WebhookReceiver
) -> None:
    job_id = submit(client, _with_hook(receiver.url))
    status = wait_until(client, job_id)
    [body] = receiver.wait_for(1)
    assert body == {**status, "input": _with_hook(receiver.url)["input"], "webhook": receiver.url}
    time.sleep(0.05)
    assert sim.counters()["webhooks"] == {"attempts": 1, "delivered": 1, "failed": 0, "dropped": 0}


def test_failed_job_posts_error(
    sim: SimulatorServer, client: httpx.Client, receiver: WebhookReceiver
) -> None:
    sim.set_faults(fail_rate=1.0)
    submit(client, _with_hook(receiver.url))
    [body] = receiver.wait_for(1)
    assert body["status"] == "FAILED"
    assert body["error"]


def test_webhook_is_retried_until_200(
    sim: SimulatorServer, client: httpx.Client, receiver: WebhookReceiver
) -> None:
    receiver.replies = [500, 404]
    submit(client, _with_hook(receiver.url))
    bodies = receiver.wait_for(3)
    assert bodies[0] == bodies[2]
    time.sleep(0.05)
    assert sim.counters()["webhooks"] == {"attempts": 3, "delivered": 1, "failed": 0, "dropped": 0}


def test_webhook_gives_up_after_attempts(
    sim: SimulatorServer, client: httpx.Client, receiver: WebhookReceiver
) -> None:
    sim.set_faults(webhook_attempts=2, webhook_retry_delay_s=0.2)
    receiver.replies = [503, 503, 503]
    start = time.monotonic()
    submit(client, _with_hook(receiver.url))
    receiver.wait_for(2)
    assert time.monotonic() - start >= 0.2
    time.sleep(0.4)
    assert len(receiver.bodies) == 2
    assert sim.counters()["webhooks"] == {"attempts": 2, "delivered": 0, "failed": 1, "dropped": 0}


def test_unreachable_webhook_counts_as_failed(sim: SimulatorServer, client: httpx.Client) -> None:
    sim.set_faults(webhook_attempts=2)
    # Port 9 (discard) on 127.0.0.1 refuses connections.
    submit(client, _with_hook("http://127.0.0.1:9/hook"))
    deadline = time.monotonic() + 5
    while sim.counters()["webhooks"]["failed"] != 1:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert sim.counters()["webhooks"]["attempts"] == 2


def test_cancelled_job_sends_no_webhook_by_default(
    sim: SimulatorServer, client: httpx.Client, receiver: WebhookReceiver
) -> None:
    sim.set_faults(job_duration_ms=2000)
    job_id = submit(client, _with_hook(receiver.url))
    client.post(f"/cancel/{job_id}")
    time.sleep(0.2)
    assert receiver.bodies == []
    sim.set_faults(webhook_on_cancel=True)
    job_id = submit(client, _with_hook(receiver.url))
    client.post(f"/cancel/{job_id}")
    [body] = receiver.wait_for(1)
    assert body["status"] == "CANCELLED"
    assert body["id"] == job_id


def test_webhook_drop_rate(
    sim: SimulatorServer, client: httpx.Client, receiver: WebhookReceiver
) -> None:
    sim.set_faults(webhook_drop_rate=1.0)
    job_id = submit(client, _with_hook(receiver.url))
    wait_until(client, job_id)
    time.sleep(0.2)
    assert receiver.bodies == []
    assert sim.counters()["webhooks"] == {"attempts": 0, "delivered": 0, "failed": 0, "dropped": 1}


def test_webhook_must_be_http_url(client: httpx.Client) -> None:
    response = client.post("/run", json={"input": {"prompt": "p"}, "webhook": "ftp://x"})
    assert response.status_code == 400
