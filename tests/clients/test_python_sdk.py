"""The Python SDK against a real stack (API and worker processes, PostgreSQL, Redis, the
simulator), sync and async; its webhook check against Podrelay's own signatures."""

import asyncio
import json
import time
from pathlib import Path

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from app.notify.signing import new_secret, signed_headers, standard_secret
from podrelay_client import (
    ApiConnectionError,
    AsyncPodrelay,
    AuthenticationError,
    ConflictError,
    GenerationOptions,
    JobStatus,
    Model,
    NotFoundError,
    PermissionDeniedError,
    Podrelay,
    RateLimitError,
    UnprocessableError,
    WaitTimeout,
    WebhookVerificationError,
    verify_webhook,
)
from podrelay_client._core import RetryPolicy
from tests.clients.sdk import SdkStack
from tests.stack.deployment import ENDPOINT_ID
from tests.stack.waiting import free_port

pytestmark = pytest.mark.timeout(180)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SMALL: GenerationOptions = {"width": 256, "height": 256}


@pytest.fixture
def podrelay(sdk_stack: SdkStack) -> Podrelay:
    return Podrelay(sdk_stack.url, sdk_stack.key)


def test_generate_waits_for_the_images_and_downloads_them(
    podrelay: Podrelay, tmp_path: Path
) -> None:
    with podrelay:
        job = podrelay.generate("a lighthouse", wait=True, seed=7, width=256, height=256)
        assert (job.status, job.settled, job.params["seed"]) == (JobStatus.COMPLETED, True, 7)
        [image] = job.images
        content = podrelay.download(image, tmp_path / "lighthouse.png")
        assert content.startswith(PNG_MAGIC)
        assert (tmp_path / "lighthouse.png").read_bytes() == content
        assert podrelay.download(image.id) == content
        assert podrelay.status(job.id) == job
        with pytest.raises(ConflictError) as finished:
            podrelay.cancel(job.id)
        assert finished.value.code == "job_finished"


def test_events_follow_a_job_and_resume_after_the_last_seen(podrelay: Podrelay) -> None:
    with podrelay:
        job = podrelay.generate("a harbour", **SMALL)
        events = list(podrelay.events(job.id))
        assert events[0].kind == "created"
        assert events[-1].status == JobStatus.COMPLETED
        assert [event.id for event in events] == sorted({event.id for event in events})
        resumed = list(podrelay.events(job.id, last_event_id=str(events[1].id)))
        assert resumed == events[2:]


def test_batch_and_paginated_jobs(podrelay: Podrelay) -> None:
    with podrelay:
        batch = podrelay.batch(["one", "two", "three"], **SMALL)
        assert (batch.size, [job.prompt for job in batch.jobs]) == (3, ["one", "two", "three"])
        listed = list(podrelay.jobs(batch_id=batch.id, page_size=2))
        assert sorted(job.id for job in listed) == sorted(job.id for job in batch.jobs)
        for job in batch.jobs:
            podrelay.wait(job.id, timeout=60)
        assert podrelay.batch_status(batch.id).done
        assert sum(day.jobs for day in podrelay.usage().days) >= 3


def test_a_session_token_acts_for_its_user_only(podrelay: Podrelay) -> None:
    with podrelay:
        minted = podrelay.session_token("py-user-1", ttl_s=300, limits={"daily_budget_usd": 1})
        assert (minted.token[:4], minted.expires_in) == ("prs_", 300)
        assert minted.owner.endswith("/py-user-1")
        with Podrelay(podrelay.base_url, minted.token) as user:
            job = user.generate("a user's harbour", wait=True, **SMALL)
            assert job.status == JobStatus.COMPLETED
            assert user.download(job.images[0]).startswith(PNG_MAGIC)
            [daily] = user.usage().budgets
            assert (daily.period, daily.budget_usd) == ("daily", 1)
            with pytest.raises(PermissionDeniedError) as refused:
                user.session_token("py-user-2")
            assert refused.value.code == "server_key_required"
        with pytest.raises(NotFoundError):
            podrelay.status(job.id)  # the key's own jobs are not its users'


def test_cancel_a_wait_timeout_and_errors_with_their_codes(
    sdk_stack: SdkStack, podrelay: Podrelay
) -> None:
    sdk_stack.stack.simulator.set_faults(workers=0)  # RunPod keeps the job queued
    try:
        with podrelay:
            job = podrelay.generate("never runs", **SMALL)
            with pytest.raises(WaitTimeout):
                podrelay.wait(job.id, timeout=0.5)
            assert podrelay.cancel(job.id).status == JobStatus.CANCELLED
            with pytest.raises(NotFoundError) as missing:
                podrelay.status("job_nope")
            assert (missing.value.status, missing.value.code) == (404, "job_not_found")
            with pytest.raises(UnprocessableError) as invalid:
                podrelay.generate("too narrow", width=100)
            assert invalid.value.code == "validation_error"
            assert invalid.value.problem.errors
    finally:
        sdk_stack.stack.simulator.set_faults(workers=8)
    with Podrelay(sdk_stack.url, "prk_not-a-key") as stranger, pytest.raises(AuthenticationError):
        stranger.status("job_x")


def test_idempotency_keys_replay_and_refuse_another_body(podrelay: Podrelay) -> None:
    with podrelay:
        first = podrelay.generate("once", idempotency_key="sdk-order-1", **SMALL)
        again = podrelay.generate("once", idempotency_key="sdk-order-1", **SMALL)
        assert (again.id, again.replayed) == (first.id, True)
        with pytest.raises(UnprocessableError) as reused:
            podrelay.generate("another", idempotency_key="sdk-order-1", **SMALL)
        assert reused.value.code == "idempotency_key_reused"


def test_a_rate_limit_is_retried_after_the_retry_after_the_api_names(
    sdk_stack: SdkStack,
) -> None:
    key = sdk_stack.new_key("sdk-limited", requests_per_minute=1)
    with Podrelay(sdk_stack.url, key, max_retries=0) as limited:
        limited.usage()
        with pytest.raises(RateLimitError) as refused:
            limited.usage()
    answer = refused.value.response
    named = int(answer.headers["Retry-After"])
    assert refused.value.retry_after == named
    assert RetryPolicy(max_retries=1).delay(1, answer) == named
    assert RetryPolicy(max_retries=0).delay(1, answer) is None  # retries spent


def test_retries_wait_and_then_succeed() -> None:
    """Answers nothing real gives in a test's time (a 503, then a success), at the HTTP edge."""
    answers = [
        httpx.Response(503, headers={"Retry-After": "0"}, json=_problem(503, "broker_unavailable")),
        httpx.Response(
            200,
            json={"days": [], "gpu_price_per_second": 0.0, "job_estimate_usd": 0.0, "budgets": []},
        ),
    ]
    seen: list[httpx.Request] = []

    def transport(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answers.pop(0)

    http = httpx.Client(base_url="http://podrelay.test", transport=httpx.MockTransport(transport))
    with Podrelay(http=http) as podrelay:
        assert podrelay.usage().days == []
    assert len(seen) == 2


def test_no_answer_is_a_connection_error() -> None:
    with Podrelay(f"http://127.0.0.1:{free_port()}", max_retries=1) as podrelay:
        with pytest.raises(ApiConnectionError) as failed:
            podrelay.status("job_x")
    assert "refused" in failed.value.reason.lower()


def test_models_lists_the_route_and_its_endpoints_health(podrelay: Podrelay) -> None:
    """Without a routes file, one route, `default`, on RUNPOD_URL's endpoint; the worker's
    dispatcher has checked its health."""
    with podrelay:
        podrelay.generate("a model check", wait=30, **SMALL)
        [model] = podrelay.models()
    assert isinstance(model, Model)
    assert (model.name, model.default, model.kind, model.fallbacks) == (
        "default",
        True,
        "sdxl",
        [],
    )
    assert model.defaults["width"] == 1024
    [endpoint] = model.endpoints
    assert endpoint.id == ENDPOINT_ID
    assert endpoint.checked_at is not None
    assert endpoint.circuit == "closed"
    assert endpoint.workers.throttled == 0
    assert endpoint.max_in_flight is not None


def test_the_async_client(sdk_stack: SdkStack) -> None:
    async def scenario() -> None:
        async with AsyncPodrelay(sdk_stack.url, sdk_stack.key) as podrelay:
            done = await podrelay.generate("async one", wait=30, **SMALL)
            assert done.settled
            assert (await podrelay.download(done.images[0])).startswith(PNG_MAGIC)
            started = await podrelay.generate("async two", **SMALL)
            kinds = [event.kind async for event in podrelay.events(started.id)]
            assert kinds[0] == "created"
            ids = [job.id async for job in podrelay.jobs(page_size=1)][:2]
            assert ids == [started.id, done.id]
            with pytest.raises(NotFoundError):
                await podrelay.cancel("job_nope")
            assert [model.name for model in await podrelay.models()] == ["default"]

    asyncio.run(scenario())


def _problem(status: int, code: str) -> dict[str, object]:
    return {"title": "t", "status": status, "code": code, "detail": "d", "retryable": True}


# --- webhooks -------------------------------------------------------------------------------

BODY = json.dumps({"type": "job.completed", "data": {"id": "job_1", "prompt": "ünïcode"}}).encode()


@pytest.mark.parametrize(
    "secret",
    [new_secret(), "whsec_Qk3x-podrelay-older-secret-made-by-token-url"[:49]],
    ids=["standard", "older"],
)
def test_verify_webhook_accepts_podrelays_signatures_and_nothing_else(secret: str) -> None:
    now = int(time.time())
    good = signed_headers(secret, "msg_1", now, BODY)
    assert verify_webhook(good, BODY, secret) == json.loads(BODY)
    assert verify_webhook({k.title(): v for k, v in good.items()}, BODY.decode(), secret)
    Webhook(standard_secret(secret)).verify(BODY, good)  # the stock verifier agrees
    other = signed_headers(new_secret(), "msg_1", now, BODY)
    rotated = {
        **good,
        "webhook-signature": f"{other['webhook-signature']} {good['webhook-signature']}",
    }
    assert verify_webhook(rotated, BODY, secret)
    bad = [
        (good, BODY.replace(b"job_1", b"job_2")),
        (other, BODY),
        ({**good, "webhook-id": "msg_2"}, BODY),
        (signed_headers(secret, "msg_1", now - 600, BODY), BODY),
        ({k: v for k, v in good.items() if k != "webhook-signature"}, BODY),
        ({**good, "webhook-signature": good["webhook-signature"].replace("v1,", "v2,")}, BODY),
    ]
    for headers, body in bad:
        with pytest.raises(WebhookVerificationError):
            verify_webhook(headers, body, secret)
