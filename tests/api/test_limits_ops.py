"""Request body bounds, per-caller rate limits, `/readyz` and `/metrics`, in-process over ASGI."""

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import redis
from prometheus_client import REGISTRY

from app.accounts.models import ApiKey
from app.accounts.ratelimit import REDIS_PREFIX, RedisRateLimiter
from app.accounts.service import create_key
from app.celery_app import broker_config
from app.simulator.server import SimulatorServer
from tests.factories import add_job
from tests.stack.http_api import API, PROBLEM_JSON, bearer, new_key, rate_limit
from tests.stack.inprocess_api import ApiFactory, RunningApi
from tests.stack.waiting import free_port

REDIS_TEST_URL = "redis://127.0.0.1:6379/14"
TOKEN = "t" * 32  # a well-formed webhook token that belongs to no submission


def make_broker_folder(api: RunningApi) -> None:
    # An API process imports the Celery app, which creates the embedded broker's folders
    # under its DATA_DIR; here Celery was imported earlier, with other settings.
    broker_config(api.engine.settings)


async def chunks(count: int, size: int, *, pause: float = 0.0) -> AsyncIterator[bytes]:
    for _ in range(count):
        if pause:
            await asyncio.sleep(pause)
        yield b" " * size


def sample(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# --- Body size and time -------------------------------------------------------------------


async def test_content_length_over_the_limit_is_refused_before_reading(
    api_factory: ApiFactory,
) -> None:
    async with api_factory(MAX_REQUEST_BYTES="2048") as api:
        response = await api.client.post(
            f"{API}/generate",
            content=b"x" * 2049,
            headers={"Content-Type": "application/json"},
        )
        assert response.status_code == 413
        assert response.headers["content-type"] == PROBLEM_JSON
        assert response.headers["connection"] == "close"
        body = response.json()
        assert body["code"] == "payload_too_large"
        assert body["status"] == 413
        assert "2048" in body["detail"]

        at_limit = await api.client.post(
            f"{API}/generate",
            content=b"[" + b" " * 2046 + b"]",
            headers={"Content-Type": "application/json"},
        )
        assert at_limit.status_code == 422  # read and validated, not refused


async def test_streamed_body_is_refused_once_it_passes_the_limit(api_factory: ApiFactory) -> None:
    consumed = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal consumed
        async for chunk in chunks(40, 512):
            consumed += 1
            yield chunk

    async with api_factory(MAX_REQUEST_BYTES="2048") as api:
        response = await api.client.post(
            f"{API}/generate", content=body(), headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 413
        assert response.headers["content-type"] == PROBLEM_JSON
        assert response.json()["code"] == "payload_too_large"
        assert consumed <= 2048 // 512 + 1  # the rest of the stream was never read

        # A streamed body within the limit reaches the handler.
        small = await api.client.post(
            f"{API}/generate", content=chunks(3, 512), headers={"Content-Type": "application/json"}
        )
        assert small.status_code == 422


async def test_runpod_webhooks_may_carry_bodies_larger_than_the_api_limit(
    api_factory: ApiFactory,
) -> None:
    payload = b'{"id": "sync-1", "status": "COMPLETED", "output": "' + b"A" * 50_000 + b'"}'
    async with api_factory(MAX_REQUEST_BYTES="2048") as api:
        response = await api.client.post(
            f"/webhooks/runpod/{TOKEN}",
            content=payload,
            headers={"Content-Type": "application/json"},
        )
        assert response.status_code == 404  # read in full, then refused for its unknown token


async def test_a_trickled_body_is_cut_off_with_408(api_factory: ApiFactory) -> None:
    async with api_factory(REQUEST_BODY_TIMEOUT="0.3") as api:
        started = time.monotonic()
        response = await api.client.post(
            f"{API}/generate",
            content=chunks(100, 1, pause=0.05),  # would take 5 s
            headers={"Content-Type": "application/json"},
        )
        elapsed = time.monotonic() - started
        assert response.status_code == 408
        assert response.headers["content-type"] == PROBLEM_JSON
        body = response.json()
        assert body["code"] == "request_timeout"
        assert body["retryable"] is True
        assert elapsed < 2.0

        # The bound is on the body only: requests without one are not affected.
        assert (await api.client.get("/healthz")).status_code == 200


# --- Rate limits --------------------------------------------------------------------------


async def test_over_the_budget_is_429_with_retry_after_and_ratelimit_headers(
    api_factory: ApiFactory,
) -> None:
    async with api_factory(REQUESTS_PER_MINUTE="3") as api:
        remaining = []
        for _ in range(3):
            response = await api.client.get(f"{API}/jobs")
            assert response.status_code == 200
            assert rate_limit(response)["q"] == 3
            assert 1 <= rate_limit(response)["t"] <= 60
            remaining.append(rate_limit(response)["r"])
        assert remaining == [2, 1, 0]

        refused = await api.client.get(f"{API}/jobs")
        assert refused.status_code == 429
        assert refused.headers["content-type"] == PROBLEM_JSON
        body = refused.json()
        assert body["code"] == "rate_limited"
        assert body["retryable"] is True
        assert 1 <= body["retry_after"] <= 60
        assert refused.headers["Retry-After"] == str(int(body["retry_after"]))
        assert refused.headers["RateLimit-Policy"] == '"read";q=3;w=60'
        assert refused.headers["RateLimit"] == f'"read";r=0;t={refused.headers["Retry-After"]}'

        # Health, readiness, metrics and RunPod's webhooks are not limited.
        for path in ("/healthz", "/metrics"):
            response = await api.client.get(path)
            assert response.status_code == 200, path
            assert "RateLimit" not in response.headers
        webhook = await api.client.post(f"/webhooks/runpod/{TOKEN}", json={"id": "x"})
        assert webhook.status_code == 404
        assert "RateLimit" not in webhook.headers


async def test_each_api_key_has_its_own_budget(api_factory: ApiFactory) -> None:
    async with api_factory(ENVIRONMENT="production", REQUESTS_PER_MINUTE="2") as api:
        (_, first), (_, second) = new_key(api, "first"), new_key(api, "second")
        _, roomy = new_key(api, "roomy", requests_per_minute=5)
        for _ in range(2):
            assert (await api.client.get(f"{API}/jobs", headers=bearer(first))).status_code == 200
        assert (await api.client.get(f"{API}/jobs", headers=bearer(first))).status_code == 429

        other = await api.client.get(f"{API}/jobs", headers=bearer(second))
        assert other.status_code == 200
        assert rate_limit(other)["r"] == 1

        # A key's own `requests_per_minute` replaces the default.
        own = await api.client.get(f"{API}/jobs", headers=bearer(roomy))
        assert rate_limit(own)["q"] == 5

        # Error answers and every route under /api/v1 count and carry the headers.
        missing = await api.client.get(f"{API}/status/job_unknown", headers=bearer(second))
        assert missing.status_code == 404
        assert rate_limit(missing)["r"] == 0
        # A request without a key is refused before it reaches any budget.
        assert (await api.client.get(f"{API}/jobs")).status_code == 401


async def test_anonymous_callers_are_limited_per_client_ip(api_factory: ApiFactory) -> None:
    async with api_factory(REQUESTS_PER_MINUTE="1") as api:
        assert (await api.client.get(f"{API}/jobs")).status_code == 200
        assert (await api.client.get(f"{API}/jobs")).status_code == 429
        transport = httpx.ASGITransport(app=api.app, client=("10.1.2.3", 4567))
        async with httpx.AsyncClient(transport=transport, base_url="http://podrelay.test") as other:
            assert (await other.get(f"{API}/jobs")).status_code == 200


@pytest.fixture
def redis_db() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_TEST_URL)
    try:
        client.ping()
    except redis.RedisError as error:
        pytest.fail(f"Redis is required at {REDIS_TEST_URL} ({error})")
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


async def test_with_redis_the_budget_is_shared_by_api_processes(
    api_factory: ApiFactory, redis_db: redis.Redis
) -> None:
    env = {"REDIS_URL": REDIS_TEST_URL, "REQUESTS_PER_MINUTE": "3", "ENVIRONMENT": "production"}
    # Two applications on one ledger and one Redis: two API processes.
    async with api_factory(**env) as one, api_factory(**env) as two:
        _, plaintext = new_key(one, "shared")
        assert (await one.client.get(f"{API}/jobs", headers=bearer(plaintext))).status_code == 200
        assert (await two.client.get(f"{API}/jobs", headers=bearer(plaintext))).status_code == 200
        third = await one.client.get(f"{API}/jobs", headers=bearer(plaintext))
        assert third.status_code == 200
        assert rate_limit(third)["r"] == 0
        refused = await two.client.get(f"{API}/jobs", headers=bearer(plaintext))
        assert refused.status_code == 429
        assert int(refused.headers["Retry-After"]) == rate_limit(refused)["t"]

        with one.engine.db.session() as session:
            (key_id,) = [key.id for key in session.query(ApiKey).all()]
        keys = redis_db.keys(f"{REDIS_PREFIX}*")
        assert keys == [f"{REDIS_PREFIX}read:{key_id}".encode()]  # the key id, never the key
        assert 0 < redis_db.pttl(keys[0]) <= 60_000
        assert int(redis_db.get(keys[0]) or 0) == 4


async def test_concurrent_hits_counted_together_each_get_their_own_place(
    redis_db: redis.Redis,
) -> None:
    limiter = RedisRateLimiter(REDIS_TEST_URL)
    calls_before = _script_calls(redis_db)
    try:
        hits = await asyncio.gather(
            *(limiter.hit(caller, 30) for _ in range(40) for caller in ("one", "two"))
        )
    finally:
        await limiter.aclose()
    assert _script_calls(redis_db) - calls_before < len(hits) / 4
    for caller, mine in (("one", hits[0::2]), ("two", hits[1::2])):
        assert sorted(hit.count for hit in mine) == list(range(1, 41))
        assert sum(hit.allowed for hit in mine) == 30
        assert int(redis_db.get(f"{REDIS_PREFIX}{caller}") or 0) == 40
    assert {hit.reset_s for hit in hits} == {60}


def _script_calls(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return sum(stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in ("eval", "evalsha"))


async def test_without_redis_answering_the_limits_fall_back_to_memory(
    api_factory: ApiFactory,
) -> None:
    async with api_factory(
        REDIS_URL=f"redis://127.0.0.1:{free_port()}/0", REQUESTS_PER_MINUTE="1"
    ) as api:
        first = await api.client.get(f"{API}/jobs")
        assert first.status_code == 200
        assert rate_limit(first)["r"] == 0
        assert (await api.client.get(f"{API}/jobs")).status_code == 429


# --- Readiness ----------------------------------------------------------------------------


async def test_readyz_is_200_when_database_broker_and_runpod_answer(api: RunningApi) -> None:
    make_broker_folder(api)
    response = await api.client.get("/readyz")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ready"
    assert set(body["checks"]) == {"database", "broker", "runpod"}
    assert all(check["ok"] for check in body["checks"].values())
    assert body["checks"]["broker"]["detail"] == "embedded"
    # Liveness is unchanged.
    assert (await api.client.get("/healthz")).json() == {"status": "ok"}


async def test_readyz_pings_redis_when_it_is_the_broker(
    api_factory: ApiFactory, redis_db: redis.Redis
) -> None:
    async with api_factory(REDIS_URL=REDIS_TEST_URL) as api:
        response = await api.client.get("/readyz")
        assert response.status_code == 200, response.text
        assert response.json()["checks"]["broker"] == {"ok": True, "detail": "redis"}
    port = free_port()
    async with api_factory(REDIS_URL=f"redis://127.0.0.1:{port}/0") as api:
        response = await api.client.get("/readyz")
        assert response.status_code == 503
        broker = response.json()["checks"]["broker"]
        assert broker["ok"] is False
        assert "PING" in broker["detail"]


async def test_readyz_is_503_when_runpod_cannot_be_reached(api_factory: ApiFactory) -> None:
    async with api_factory(RUNPOD_URL=f"http://127.0.0.1:{free_port()}/v2/ep/run") as api:
        make_broker_folder(api)
        started = time.monotonic()
        response = await api.client.get("/readyz")
        assert time.monotonic() - started < 3.5
        assert response.status_code == 503
        assert response.headers["content-type"] == "application/json"
        body = response.json()
        assert body["status"] == "not_ready"
        assert body["checks"]["database"] == {"ok": True}
        assert body["checks"]["broker"]["ok"] is True
        runpod = body["checks"]["runpod"]
        assert runpod["ok"] is False
        assert "could not reach RunPod" in runpod["detail"]

        metrics = (await api.client.get("/metrics")).text
        assert 'podrelay_runpod_errors_total{error="connection",operation="health"}' in metrics


async def test_readyz_reports_a_refused_runpod_key_as_not_ready(
    api: RunningApi, simulator: SimulatorServer
) -> None:
    make_broker_folder(api)
    simulator.set_faults(api_key="the-right-key")  # the API presents "test-key"
    response = await api.client.get("/readyz")
    assert response.status_code == 503
    runpod = response.json()["checks"]["runpod"]
    assert runpod["ok"] is False
    assert "refused the API key" in runpod["detail"]
    assert "test-key" not in response.text


async def test_readyz_is_503_without_the_embedded_broker_folder(api: RunningApi) -> None:
    response = await api.client.get("/readyz")
    assert response.status_code == 503
    broker = response.json()["checks"]["broker"]
    assert broker["ok"] is False
    assert "missing" in broker["detail"]


# --- Metrics ------------------------------------------------------------------------------


async def test_metrics_expose_requests_jobs_runpod_and_webhooks_without_secrets(
    api_factory: ApiFactory,
) -> None:
    async with api_factory(ENVIRONMENT="production", MAX_REQUEST_BYTES="2048") as api:
        with api.engine.db.session() as session:
            admin, plaintext = create_key(session, name="ops", is_admin=True)
            job_id = add_job(session, owner=admin.id, prompt="a lighthouse").id
        headers = bearer(plaintext)
        labels = {"route": f"{API}/status/{{task_id}}", "method": "GET", "status": "200"}
        requests_before = sample("podrelay_http_requests_total", labels)
        assert (await api.client.get(f"{API}/status/{job_id}", headers=headers)).status_code == 200
        assert (await api.client.get(f"{API}/queue/stats", headers=headers)).status_code == 200
        too_large = await api.client.post(
            f"{API}/generate", content=b"x" * 4096, headers={"Content-Type": "application/json"}
        )
        assert too_large.status_code == 413
        await api.client.post(f"/webhooks/runpod/{TOKEN}", json={"id": "x"})
        await api.client.get(f"/no/such/{TOKEN}")

        response = await api.client.get("/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        text = response.text

        status_route = f'route="{API}/status/{{task_id}}"'
        assert f'podrelay_http_requests_total{{method="GET",{status_route},status="200"}}' in text
        # Counters are the process's, shared with earlier tests: compare with the start.
        latency = "podrelay_http_request_duration_seconds"
        assert f'{latency}_bucket{{le="+Inf",method="GET",{status_route}}}' in text
        labels = {"route": f"{API}/status/{{task_id}}", "method": "GET", "status": "200"}
        assert sample("podrelay_http_requests_total", labels) == requests_before + 1
        assert f'method="POST",route="{API}/generate",status="413"' in text
        assert 'route="/webhooks/runpod/{token}"' in text
        assert 'route="<unmatched>"' in text
        assert 'podrelay_jobs{status="pending"} 1.0' in text
        assert 'podrelay_jobs{status="completed"} 0.0' in text
        assert "podrelay_queue_depth 1.0" in text
        assert "podrelay_ledger_up 1.0" in text
        assert 'podrelay_runpod_request_duration_seconds_count{operation="health"}' in text
        assert "podrelay_runpod_errors_total" in text
        assert 'podrelay_webhook_deliveries_total{outcome="delivered"}' in text
        assert "_created" not in text

        for secret in (plaintext, TOKEN, job_id, admin.id, "test-key"):
            assert secret not in text


async def test_cors_origins_let_those_pages_call_the_api_and_no_other(
    api_factory: ApiFactory,
) -> None:
    page = {"Origin": "https://app.example"}
    async with api_factory(ENVIRONMENT="production", CORS_ORIGINS="https://app.example") as api:
        preflight = await api.client.options(
            f"{API}/generate",
            headers={
                **page,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, idempotency-key, content-type",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://app.example"
        allowed = preflight.headers["access-control-allow-headers"].lower()
        assert {"authorization", "idempotency-key", "prefer", "last-event-id"} <= set(
            allowed.replace(" ", "").split(",")
        )
        # A keyed submission and an error answer carry it too.
        submitted = await api.client.post(
            f"{API}/generate",
            json={"prompt": "p"},
            headers={**page, **bearer(new_key(api, "w")[1])},
        )
        assert submitted.status_code == 202
        assert submitted.headers["access-control-allow-origin"] == "https://app.example"
        exposed = submitted.headers["access-control-expose-headers"].lower()
        assert {"location", "ratelimit", "ratelimit-policy", "retry-after"} <= set(
            exposed.replace(" ", "").split(",")
        )
        refused = await api.client.get(f"{API}/jobs", headers=page)
        assert refused.status_code == 401
        assert refused.headers["access-control-allow-origin"] == "https://app.example"
        other = await api.client.get(f"{API}/jobs", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers
    async with api_factory(ENVIRONMENT="production", CORS_ORIGINS="") as api:  # the default
        answer = await api.client.get(f"{API}/jobs", headers=page)
        assert answer.status_code == 401
        assert "access-control-allow-origin" not in answer.headers
