"""Error mapping and retry classification at the HTTP edge (answers the simulator cannot give)."""

import json
from collections.abc import Callable

import httpx
import pytest

from app.runpod import (
    AmbiguousSubmissionError,
    AuthenticationError,
    JobState,
    NotFoundError,
    RateLimitError,
    RequestRejectedError,
    RunPodClient,
    RunPodConfigError,
    RunPodConnectionError,
    RunPodStatus,
    RunPodTimeoutError,
    ServerError,
)
from app.runpod._http import parse_retry_after, retry_delay

Handler = Callable[[httpx.Request], httpx.Response]


def make_client(handler: Handler, *, max_retries: int = 3) -> RunPodClient:
    return RunPodClient(
        api_key="rp_secret_key",
        endpoint_id="ep1",
        base_url="https://runpod.test/v2",
        transport=httpx.MockTransport(handler),
        max_retries=max_retries,
        initial_retry_delay=0.001,
        max_retry_delay=0.01,
    )


def scripted(*responses: httpx.Response | Exception) -> tuple[Handler, list[httpx.Request]]:
    """A handler answering with the given responses (or raising the errors) in order."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        item = responses[min(len(seen), len(responses)) - 1]
        if isinstance(item, Exception):
            raise item
        return item

    return handler, seen


def job(status: str, **extra: object) -> httpx.Response:
    return httpx.Response(200, json={"id": "job-1", "status": status, **extra})


async def test_sends_bearer_auth_and_the_envelope_unwrapped() -> None:
    handler, seen = scripted(job("IN_QUEUE"))
    async with make_client(handler) as client:
        state = await client.run(
            {"input": {}}, webhook="https://hook.test/x", policy={"ttl": 10000}
        )
    request = seen[0]
    assert request.url == "https://runpod.test/v2/ep1/run"
    assert request.headers["authorization"] == "Bearer rp_secret_key"
    # The caller's own "input" key must not be mistaken for the envelope (SDK pitfall).
    assert json.loads(request.content) == {
        "input": {"input": {}},
        "webhook": "https://hook.test/x",
        "policy": {"ttl": 10000},
    }
    assert state.status is RunPodStatus.IN_QUEUE


@pytest.mark.parametrize(
    ("code", "error_type"),
    [
        (401, AuthenticationError),
        (403, AuthenticationError),
        (404, NotFoundError),
        (413, RequestRejectedError),
        (400, RequestRejectedError),
    ],
)
async def test_status_codes_map_to_the_error_tree(code: int, error_type: type[Exception]) -> None:
    handler, seen = scripted(httpx.Response(code, json={"error": "nope"}))
    async with make_client(handler) as client:
        with pytest.raises(error_type) as caught:
            await client.status("job-1")
    assert len(seen) == 1, "client errors are never retried"
    assert "nope" in str(caught.value)
    assert "rp_secret_key" not in str(caught.value)


async def test_non_json_429_then_success_is_retried_and_honours_retry_after() -> None:
    handler, seen = scripted(
        httpx.Response(429, text="Too Many Requests", headers={"Retry-After": "0"}),
        httpx.Response(503, text="<html>bad gateway</html>"),
        job("COMPLETED", output={"image_url": "https://img.test/a.png"}),
    )
    async with make_client(handler) as client:
        state = await client.status("job-1")
    assert len(seen) == 3
    assert state.status is RunPodStatus.COMPLETED


async def test_retries_stop_after_max_retries_with_the_last_error() -> None:
    handler, seen = scripted(httpx.Response(502, text="bad gateway"))
    async with make_client(handler, max_retries=2) as client:
        with pytest.raises(ServerError) as caught:
            await client.health()
    assert len(seen) == 3
    assert caught.value.status_code == 502


async def test_long_retry_after_is_handed_back_instead_of_slept() -> None:
    handler, seen = scripted(httpx.Response(429, json={}, headers={"Retry-After": "3600"}))
    async with make_client(handler) as client:
        with pytest.raises(RateLimitError) as caught:
            await client.cancel("job-1")
    assert len(seen) == 1
    assert caught.value.retry_after == 3600


async def test_run_is_retried_when_the_request_never_left() -> None:
    handler, seen = scripted(httpx.ConnectError("refused"), job("IN_QUEUE"))
    async with make_client(handler) as client:
        state = await client.run({"prompt": "x"})
    assert len(seen) == 2
    assert state.id == "job-1"


async def test_run_is_retried_on_429() -> None:
    handler, seen = scripted(httpx.Response(429, text=""), job("IN_QUEUE"))
    async with make_client(handler) as client:
        await client.run({"prompt": "x"})
    assert len(seen) == 2


@pytest.mark.parametrize(
    "failure",
    [
        httpx.ReadTimeout("slow"),
        httpx.RemoteProtocolError("peer closed"),
        httpx.ReadError("reset"),
        httpx.Response(500, text="oops"),
        httpx.Response(504, text="gateway timeout"),
    ],
)
async def test_run_failure_after_sending_is_ambiguous_and_not_retried(
    failure: httpx.Response | Exception,
) -> None:
    handler, seen = scripted(failure, job("IN_QUEUE"))
    async with make_client(handler) as client:
        with pytest.raises(AmbiguousSubmissionError) as caught:
            await client.run({"prompt": "x"})
    assert len(seen) == 1
    assert "may exist" in caught.value.message


async def test_status_transport_errors_become_our_errors() -> None:
    handler, _ = scripted(httpx.ReadTimeout("slow"))
    async with make_client(handler, max_retries=1) as client:
        with pytest.raises(RunPodTimeoutError):
            await client.status("job-1")
    handler, _ = scripted(httpx.ConnectError("refused"))
    async with make_client(handler, max_retries=0) as client:
        with pytest.raises(RunPodConnectionError):
            await client.status("job-1")


async def test_failed_runsync_with_400_and_a_job_body_is_a_state_not_an_error() -> None:
    body = {"id": "sync-1", "status": "FAILED", "error": "nsfw content"}
    handler, _ = scripted(httpx.Response(400, json=body))
    async with make_client(handler) as client:
        state = await client.run_sync({"prompt": "x"}, wait_ms=1000)
    assert state.status is RunPodStatus.FAILED
    assert state.error == "nsfw content"


async def test_runsync_sends_wait_and_reads_long_enough() -> None:
    handler, seen = scripted(job("IN_PROGRESS"))
    async with make_client(handler) as client:
        state = await client.run_sync({"prompt": "x"}, wait_ms=2000)
    assert seen[0].url.params["wait"] == "2000"
    assert seen[0].extensions["timeout"]["read"] >= 2.0
    assert not state.is_terminal


async def test_health_tolerates_missing_and_extra_counts() -> None:
    body = {"jobs": {"inQueue": 3, "weird": "x"}, "workers": {"idle": 1, "future": 2}}
    handler, _ = scripted(httpx.Response(200, json=body))
    async with make_client(handler) as client:
        report = await client.health()
    assert report.job_count("inQueue") == 3
    assert report.job_count("completed") == 0
    assert report.worker_count("throttled") == 0
    assert report.worker_count("future") == 2


async def test_purge_queue_returns_removed_count() -> None:
    handler, seen = scripted(httpx.Response(200, json={"removed": 4, "status": "completed"}))
    async with make_client(handler) as client:
        assert await client.purge_queue() == 4
    assert seen[0].method == "POST"


def test_missing_key_is_a_config_error() -> None:
    with pytest.raises(RunPodConfigError, match="RUNPOD_API_KEY is not set"):
        RunPodClient(api_key="", endpoint_id="ep")


@pytest.mark.parametrize(
    ("payload", "status", "terminal"),
    [
        ({"id": "a", "status": "IN_QUEUE"}, RunPodStatus.IN_QUEUE, False),
        (
            {"id": "a", "status": "IN_PROGRESS", "output": {"progress": 0.4}},
            RunPodStatus.IN_PROGRESS,
            False,
        ),
        ({"id": "a", "status": "RUNNING"}, RunPodStatus.IN_PROGRESS, False),
        ({"id": "a", "status": "COMPLETED", "output": {}}, RunPodStatus.COMPLETED, True),
        ({"id": "a", "status": "FAILED", "error": "x"}, RunPodStatus.FAILED, True),
        ({"id": "a", "status": "CANCELLED"}, RunPodStatus.CANCELLED, True),
        ({"id": "a", "status": "TIMED_OUT"}, RunPodStatus.TIMED_OUT, True),
        ({"id": "a", "status": "THROTTLED_BY_FUTURE"}, RunPodStatus.UNKNOWN, False),
        ({"id": "a"}, RunPodStatus.UNKNOWN, False),
    ],
)
def test_every_status_parses(
    payload: dict[str, object], status: RunPodStatus, terminal: bool
) -> None:
    state = JobState.from_payload(payload)
    assert state.status is status
    assert state.is_terminal is terminal


def test_output_while_in_progress_is_progress_not_result() -> None:
    state = JobState.from_payload({"id": "a", "status": "IN_PROGRESS", "output": {"progress": 0.5}})
    assert state.output is None
    assert state.progress == {"progress": 0.5}
    assert not state.has_output


def test_retry_after_parsing() -> None:
    assert parse_retry_after("2.5") == 2.5
    assert parse_retry_after(None) is None
    assert parse_retry_after("garbage") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


def test_backoff_grows_is_capped_and_respects_retry_after() -> None:
    error = ServerError("x", status_code=500)
    delays = [retry_delay(n, error, initial=1.0, cap=8.0) for n in range(6)]
    assert all(d is not None for d in delays)
    assert 0.5 <= (delays[0] or 0) <= 1.0
    assert all((d or 0) <= 8.0 for d in delays)
    assert (delays[5] or 0) >= 4.0
    limited = RateLimitError("x", retry_after=5.0)
    assert retry_delay(0, limited, initial=0.1, cap=1.0) == 5.0
