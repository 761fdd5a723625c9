"""Plain keyed submissions are served by `app.api.fast_generate`, everything else by the route,
and a client cannot tell them apart: same status, headers, body shape and errors."""

import asyncio
from collections import Counter
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from app.accounts.service import revoke_key
from app.api.deps import get_engine
from app.jobs.engine import JobEngine
from app.jobs.models import Job
from tests.api.conftest import ApiFactory, RunningApi, rate_limit
from tests.api.test_endpoints import API, new_key
from tests.api.test_limits_ops import chunks, sample

GENERATE = f"{API}/generate"
# Fields that differ between two jobs made from one request.
_PER_JOB = {"id", "links", "timings", "queue_position"}


def _route_unusable(api: RunningApi) -> None:
    """Make every request that reaches the route's dependencies fail."""

    async def broken() -> JobEngine:
        raise RuntimeError("the route was used")

    api.app.dependency_overrides[get_engine] = broken


def _same_job(fast: dict[str, Any], routed: dict[str, Any]) -> None:
    assert fast.keys() == routed.keys()
    assert {k: v for k, v in fast.items() if k not in _PER_JOB} == {
        k: v for k, v in routed.items() if k not in _PER_JOB
    }
    assert fast["links"].keys() == routed["links"].keys()
    assert fast["timings"].keys() == routed["timings"].keys()


async def test_a_plain_submission_answers_as_the_route_does(
    api_factory: ApiFactory, ledger_env: dict[str, str]
) -> None:
    async with api_factory(ENVIRONMENT="production", **ledger_env) as api:
        headers = new_key(api, "fast")
        body = {"prompt": "a lighthouse ✓", "width": 512, "height": 768, "seed": 7}
        routed = await api.client.post(GENERATE, json=body, headers={**headers, "Prefer": "x"})
        fast = await api.client.post(GENERATE, json=body, headers=headers)
        for answer in (routed, fast):
            assert answer.status_code == 202, answer.text
            assert answer.headers["content-type"] == "application/json"
            assert answer.headers["location"] == answer.json()["links"]["status"]
        assert rate_limit(fast)["r"] == rate_limit(routed)["r"] - 1
        _same_job(fast.json(), routed.json())
        status = await api.client.get(fast.headers["location"], headers=headers)
        assert status.status_code == 200
        assert status.json()["prompt"] == body["prompt"]


async def test_the_route_is_not_used_for_a_plain_submission(api_factory: ApiFactory) -> None:
    async with api_factory(ENVIRONMENT="production") as api:
        headers = new_key(api, "fast")
        _route_unusable(api)
        fast = await api.client.post(GENERATE, json={"prompt": "p"}, headers=headers)
        assert fast.status_code == 202, fast.text
        for handed_over in ({"Idempotency-Key": "k1"}, {"Prefer": "wait=1"}, {}):
            with pytest.raises(RuntimeError, match="the route was used"):
                await api.client.post(
                    GENERATE,
                    json={"prompt": "p", "webhook_url": "https://example.com/hook"}
                    if not handed_over
                    else {"prompt": "p"},
                    headers={**headers, **handed_over},
                )


@pytest.mark.parametrize(
    ("content", "status", "code"),
    [
        (b'{"prompt": ""}', 422, "validation_error"),
        (b'{"prompt": "p", "colour": "red"}', 422, "validation_error"),
        (b'{"prompt": "p"', 422, "validation_error"),
        (b"", 422, "validation_error"),
        (b'["prompt"]', 422, "validation_error"),
    ],
)
async def test_refusals_are_the_routes(
    api_factory: ApiFactory, content: bytes, status: int, code: str
) -> None:
    async with api_factory(ENVIRONMENT="production") as api:
        headers = {**new_key(api, "fast"), "Content-Type": "application/json"}
        answers = [
            await api.client.post(GENERATE, content=content, headers={**headers, **extra})
            for extra in ({}, {"Prefer": "x"})  # this layer first, then the route alone
        ]
        assert [answer.status_code for answer in answers] == [status, status]
        assert [answer.json()["code"] for answer in answers] == [code, code]
        assert answers[0].json() == answers[1].json()


async def test_keys_limits_and_caps_hold(
    api_factory: ApiFactory, ledger_env: dict[str, str]
) -> None:
    async with api_factory(
        ENVIRONMENT="production", REQUESTS_PER_MINUTE="3", MAX_CONCURRENT_JOBS="1", **ledger_env
    ) as api:
        headers = new_key(api, "fast")
        wrong = await api.client.post(
            GENERATE, json={"prompt": "p"}, headers={"Authorization": "Bearer pr_wrong"}
        )
        assert (wrong.status_code, wrong.json()["code"]) == (401, "invalid_api_key")
        answers: list[httpx.Response] = [
            await api.client.post(GENERATE, json={"prompt": f"p{n}"}, headers=headers)
            for n in range(4)
        ]
        assert [answer.status_code for answer in answers] == [202, 429, 429, 429]
        codes = [answer.json()["code"] for answer in answers[1:]]
        assert codes == ["too_many_active_jobs", "too_many_active_jobs", "rate_limited"]
        assert int(answers[3].headers["retry-after"]) > 0
        assert rate_limit(answers[3])["r"] == 0
        timeout = await api.client.post(
            GENERATE, json={"prompt": "p", "timeout": 10**6}, headers=new_key(api, "other")
        )
        assert (timeout.status_code, timeout.json()["code"]) == (400, "timeout_too_long")


async def test_a_key_revoked_after_use_is_refused_at_once(
    api_factory: ApiFactory, ledger_env: dict[str, str]
) -> None:
    """This layer remembers keys for a while; the ledger write still checks each one."""
    async with api_factory(ENVIRONMENT="production", **ledger_env) as api:
        headers, other = new_key(api, "revoked"), new_key(api, "kept")
        for key in (headers, other):
            first = await api.client.post(GENERATE, json={"prompt": "p"}, headers=key)
            assert first.status_code == 202, first.text
        with api.engine.db.session() as session:
            revoke_key(session, headers["X-Key-Id"])
        answers = await asyncio.gather(
            *(
                api.client.post(GENERATE, json={"prompt": "p"}, headers=key)
                for key in (headers, other, headers)
            )
        )
        assert [answer.status_code for answer in answers] == [401, 202, 401]
        assert {answer.json()["code"] for answer in answers[::2]} == {"invalid_api_key"}
        with api.engine.db.session() as session:
            owners = Counter(session.scalars(select(Job.owner)))
        assert owners == {headers["X-Key-Id"]: 1, other["X-Key-Id"]: 2}


async def test_its_answers_are_counted_and_a_trickled_body_is_cut_off(
    api_factory: ApiFactory,
) -> None:
    """It serves from outside the metrics and body-limit middlewares, so it does their part."""
    async with api_factory(ENVIRONMENT="production", REQUEST_BODY_TIMEOUT="0.3") as api:
        headers = {**new_key(api, "fast"), "Content-Type": "application/json"}
        _route_unusable(api)
        counted = {status: _requests_answered(status) for status in ("202", "408")}
        accepted = await api.client.post(GENERATE, json={"prompt": "p"}, headers=headers)
        assert accepted.status_code == 202
        trickled = await api.client.post(
            GENERATE,
            content=chunks(100, 1, pause=0.05),  # would take 5 s
            headers={**headers, "Content-Length": "100"},
        )
        assert trickled.status_code == 408
        assert trickled.json()["code"] == "request_timeout"
        assert trickled.headers["connection"] == "close"
        assert {status: _requests_answered(status) - counted[status] for status in counted} == {
            "202": 1,
            "408": 1,
        }


def _requests_answered(status: str) -> float:
    labels = {"route": GENERATE, "method": "POST", "status": status}
    return sample("podrelay_http_requests_total", labels)


@pytest.mark.parametrize("content_type", ["text/plain", "application/jsonx"])
async def test_a_body_that_is_not_json_gets_the_routes_answer(
    api_factory: ApiFactory, content_type: str
) -> None:
    async with api_factory(ENVIRONMENT="production") as api:
        headers = {**new_key(api, "fast"), "Content-Type": content_type}
        answers = [
            await api.client.post(GENERATE, content=b'{"prompt": "p"}', headers={**headers, **x})
            for x in ({}, {"Prefer": "x"})
        ]
        assert [answer.status_code for answer in answers] == [422, 422]
        assert answers[0].json() == answers[1].json()
