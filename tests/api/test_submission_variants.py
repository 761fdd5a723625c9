"""Every form of `POST /generate` goes down one path and gets one behaviour: a plain request,
one with an Idempotency-Key, with `Prefer: wait`, with a webhook URL, and an anonymous one are
each accepted with the same answer shape and recorded the same way; past the caller's cap,
past its rate limit and with a bad key, each is refused with the same codes."""

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
from sqlalchemy import func, select

from app.accounts.service import revoke_key
from app.jobs.models import Job, JobEvent
from tests.stack.http_api import API, key_headers, rate_limit
from tests.stack.inprocess_api import ApiFactory, RunningApi

GENERATE = f"{API}/generate"
LIMITS = {
    "ENVIRONMENT": "production",
    "ALLOW_ANONYMOUS": "true",
    "ALLOW_PRIVATE_WEBHOOK_URLS": "true",
    "CREATES_PER_MINUTE": "3",
    "MAX_CONCURRENT_JOBS": "2",
}
# A variant: (the request's extra headers for its n-th request, the extra body fields).
Variant = tuple[Callable[[int], dict[str, str]], dict[str, Any]]
VARIANTS: dict[str, Variant] = {
    "plain": (lambda n: {}, {}),
    "idempotent": (lambda n: {"Idempotency-Key": f"variant-{n}"}, {}),
    "prefer-wait": (lambda n: {"Prefer": "wait=1"}, {}),
    "webhook": (lambda n: {}, {"webhook_url": "http://127.0.0.1:9/hook"}),
    "anonymous": (lambda n: {}, {}),
}
# Per job; and `Prefer: wait` answers after its wait, by when the job has a queue position.
_PER_JOB = {"id", "links", "timings", "prompt", "webhook_url", "queue_position", "queue"}


async def _send(api: RunningApi, variant: Variant, key: dict[str, str], n: int) -> httpx.Response:
    headers, fields = variant
    body = {"prompt": f"a lighthouse {n}", "width": 512, "height": 512, **fields}
    return await api.client.post(GENERATE, json=body, headers={**key, **headers(n)})


def _assert_accepted(answer: httpx.Response) -> dict[str, Any]:
    assert answer.status_code == 202, answer.text
    assert answer.headers["content-type"] == "application/json"
    job: dict[str, Any] = answer.json()
    assert answer.headers["location"] == job["links"]["status"]
    assert rate_limit(answer, "create")["q"] == 3
    assert (job["status"], job["attempts"], job["replayed"]) == ("pending", 0, False)
    return job


def _assert_refused(answer: httpx.Response, status: int, code: str) -> None:
    assert (answer.status_code, answer.json()["code"]) == (status, code), answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    if status == 429:
        assert int(answer.headers["retry-after"]) > 0


async def _one_behaviour(api: RunningApi, name: str, variant: Variant) -> dict[str, Any]:
    """Two accepted, then the cap, then the rate limit; returns the first job."""
    key = {} if name == "anonymous" else key_headers(api, name)
    first, second, capped, limited = [await _send(api, variant, key, n) for n in range(4)]
    jobs = [_assert_accepted(first), _assert_accepted(second)]
    _assert_refused(capped, 429, "too_many_active_jobs")
    _assert_refused(limited, 429, "rate_limited")
    assert rate_limit(limited, "create")["r"] == 0
    with api.engine.db.session() as session:  # what the 202 said is what the ledger holds
        recorded = session.get_one(Job, jobs[0]["id"])
        assert (
            recorded.created_at.isoformat().replace("+00:00", "Z")
            == (jobs[0]["timings"]["created_at"])
        )
        assert (recorded.status, recorded.prompt) == ("pending", jobs[0]["prompt"])
    return jobs[0]


async def test_every_variant_is_accepted_and_refused_alike(
    api_factory: ApiFactory, ledger_env: dict[str, str]
) -> None:
    async with api_factory(**LIMITS, **ledger_env) as api:
        firsts = {
            name: await _one_behaviour(api, name, variant) for name, variant in VARIANTS.items()
        }
        shapes = {
            name: {k: v for k, v in job.items() if k not in _PER_JOB}
            for name, job in firsts.items()
        }
        for name, shape in shapes.items():
            assert shape == shapes["plain"], name
        assert firsts["webhook"]["webhook_url"] == "http://127.0.0.1:9/hook"
        with api.engine.db.session() as session:
            jobs = session.scalar(select(func.count()).select_from(Job))
            created = session.scalar(
                select(func.count()).select_from(JobEvent).where(JobEvent.kind == "created")
            )
        assert jobs == created == 2 * len(VARIANTS)

        wrong = {"Authorization": "Bearer prk_not_a_key"}
        for name, variant in VARIANTS.items():
            if name != "anonymous":
                _assert_refused(await _send(api, variant, wrong, 9), 401, "invalid_api_key")


async def test_a_key_revoked_after_use_records_nothing_more(
    api_factory: ApiFactory, ledger_env: dict[str, str]
) -> None:
    async with api_factory(ENVIRONMENT="production", **ledger_env) as api:
        revoked, kept = key_headers(api, "revoked"), key_headers(api, "kept")
        for key in (revoked, kept):
            first = await api.client.post(GENERATE, json={"prompt": "p"}, headers=key)
            assert first.status_code == 202, first.text
        with api.engine.db.session() as session:
            revoke_key(session, revoked["X-Key-Id"])
        answers = await asyncio.gather(
            *(
                api.client.post(GENERATE, json={"prompt": "p"}, headers=key)
                for key in (revoked, kept, revoked)
            )
        )
        assert [answer.status_code for answer in answers] == [401, 202, 401]
        with api.engine.db.session() as session:
            owners = dict(
                session.execute(select(Job.owner, func.count()).group_by(Job.owner)).tuples().all()
            )
        assert owners == {revoked["X-Key-Id"]: 1, kept["X-Key-Id"]: 2}


async def test_concurrent_idempotent_twins_make_one_job(
    api_factory: ApiFactory, ledger_env: dict[str, str]
) -> None:
    """Twins in one group, and twins in two: one job, the others its replays."""
    async with api_factory(ENVIRONMENT="production", **ledger_env) as api:
        key = {**key_headers(api, "twins"), "Idempotency-Key": "twin"}
        answers = await asyncio.gather(
            *(api.client.post(GENERATE, json={"prompt": "p"}, headers=key) for _ in range(6))
        )
        assert {answer.status_code for answer in answers} == {202}
        assert len({answer.json()["id"] for answer in answers}) == 1
        assert sorted(answer.json()["replayed"] for answer in answers) == [False] + [True] * 5
        other = await api.client.post(GENERATE, json={"prompt": "q"}, headers=key)
        _assert_refused(other, 422, "idempotency_key_reused")
        with api.engine.db.session() as session:
            assert session.scalar(select(func.count()).select_from(Job)) == 1
