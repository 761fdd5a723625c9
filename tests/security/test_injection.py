"""Header and stream injection: CR/LF in what a client or RunPod sends never becomes a header
or an event of ours. The ASGI transport passes raw header bytes through unchecked, as a lax
proxy might, so the application itself is what is tested here (a real server refuses them
earlier: see test_raw_http.py)."""

import json
from typing import Any

import httpx

from app.notify.deliveries import deliver_due
from tests.security.helpers import submitted_job
from tests.stack.http_api import API
from tests.stack.inprocess_api import RunningApi
from tests.stack.receiver import Receiver

INJECTED = "X-Injected: yes"
CRLF_VALUES = [f"a\r\n{INJECTED}", f"a\n{INJECTED}", f"a\r{INJECTED}", "a\r\n\r\n<html>"]


def assert_no_reflection(response: httpx.Response, raw: str) -> None:
    assert response.status_code < 500, response.text
    assert "x-injected" not in {name.lower() for name in response.headers}
    for name, value in response.headers.items():
        assert "\r" not in value, (name, value)
        assert "\n" not in value, (name, value)
        assert raw not in value, (name, value)
        assert "X-Injected" not in value, (name, value)


async def raw_request(
    api: RunningApi, method: str, path: str, headers: list[tuple[bytes, bytes]], body: Any = None
) -> httpx.Response:
    """Headers sent as raw bytes, CR/LF and all (httpx would refuse to build them)."""
    content = json.dumps(body).encode() if body is not None else b""
    request = httpx.Request(
        method,
        f"http://podrelay.test{path}",
        headers=[(b"content-type", b"application/json"), *headers],
        content=content,
    )
    return await api.client.send(request)


async def test_crlf_in_request_headers_is_never_reflected(api: RunningApi) -> None:
    job_id, _, _ = await submitted_job(api, "a lighthouse")
    # Ended, so that its event stream ends (the ASGI transport reads whole answers).
    assert (await api.client.delete(f"{API}/cancel/{job_id}")).is_success
    for raw in CRLF_VALUES:
        value = raw.encode()
        cases = [
            ("POST", f"{API}/generate", [(b"idempotency-key", value)], {"prompt": "x"}),
            ("POST", f"{API}/generate", [(b"prefer", b"wait=0" + value)], {"prompt": "x"}),
            ("GET", f"{API}/status/{job_id}", [(b"authorization", b"Bearer " + value)], None),
            ("GET", f"{API}/status/{job_id}", [(b"x-api-key", value)], None),
            ("GET", f"{API}/jobs", [(b"x-request-id", value), (b"origin", value)], None),
        ]
        for method, path, headers, body in cases:
            assert_no_reflection(await raw_request(api, method, path, headers, body), raw)
        events = [(b"last-event-id", value), (b"accept", value)]
        assert_no_reflection(
            await raw_request(api, "GET", f"{API}/jobs/{job_id}/events", events), raw
        )


async def test_an_idempotency_key_with_crlf_stays_one_opaque_key(api: RunningApi) -> None:
    raw = f"order-7\r\n{INJECTED}".encode()
    body = {"prompt": "same request"}
    first = await raw_request(api, "POST", f"{API}/generate", [(b"idempotency-key", raw)], body)
    again = await raw_request(api, "POST", f"{API}/generate", [(b"idempotency-key", raw)], body)
    plain = await raw_request(
        api, "POST", f"{API}/generate", [(b"idempotency-key", b"order-7")], body
    )
    assert (first.status_code, again.status_code, plain.status_code) == (202, 202, 202)
    assert again.json()["id"] == first.json()["id"]
    assert plain.json()["id"] != first.json()["id"]  # not truncated at the line break


async def test_crlf_in_a_webhook_url_adds_no_header_to_the_delivery(
    api: RunningApi, receiver: Receiver
) -> None:
    urls = [receiver.url(f"/hook\r\n{INJECTED}"), receiver.url("/hook%0d%0aX-Injected:%20yes")]
    for url in urls:
        response = await api.client.post(
            f"{API}/generate", json={"prompt": "x", "webhook_url": url}
        )
        assert response.status_code == 202, response.text
        stored = response.json()["webhook_url"]
        assert "\r" not in stored
        assert "\n" not in stored
        await api.client.delete(f"{API}/cancel/{response.json()['id']}")
    assert await deliver_due(api.engine) == len(urls)
    assert len(receiver.requests) == len(urls)
    for request in receiver.requests:
        assert "x-injected" not in request.headers
        assert "\r" not in request.path
        assert "\n" not in request.path
        assert request.json()["type"] == "job.cancelled"


async def test_text_from_clients_and_runpod_cannot_forge_server_sent_events(
    api: RunningApi,
) -> None:
    forged = '\r\n\r\nid: 999\nevent: status\ndata: {"status": "completed"}\n\n'
    job_id, token, runpod_id = await submitted_job(api, "prompt" + forged)
    failure = {"id": runpod_id, "status": "FAILED", "error": "boom" + forged}
    delivered = await api.client.post(f"/webhooks/runpod/{token}", json=failure)
    assert delivered.status_code == 200, delivered.text

    frames = await sse_frames(api, job_id)
    assert [frame["id"] for frame in frames] == sorted({frame["id"] for frame in frames})
    assert "999" not in [frame["id"] for frame in frames]
    statuses = [json.loads(frame["data"])["status"] for frame in frames]
    assert statuses[-1] == "failed"
    assert "completed" not in statuses
    assert all(frame["event"] in ("created", "status") for frame in frames)
    status = (await api.client.get(f"{API}/status/{job_id}")).json()
    assert status["error"]["message"].startswith("boom")


async def sse_frames(api: RunningApi, job_id: str) -> list[dict[str, str]]:
    """Every frame of the (finished) job's stream, split as a browser's EventSource would."""
    async with api.client.stream("GET", f"{API}/jobs/{job_id}/events") as response:
        text = (await response.aread()).decode()
    frames = []
    for block in text.replace("\r\n", "\n").replace("\r", "\n").split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.split("\n"):
            name, _, value = line.partition(":")
            if name in ("id", "event", "data"):
                fields[name] = value.removeprefix(" ")
        if "data" in fields:
            frames.append(fields)
    return frames
