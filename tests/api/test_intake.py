"""Concurrent submissions go through shared transactions (`app.jobs.intake`) without mixing
up callers: each request gets its own job or its own error, and the caps still hold."""

import asyncio
from collections import Counter

from sqlalchemy import func, select

from app.jobs.models import Job, JobEvent
from tests.stack.http_api import API, key_headers
from tests.stack.inprocess_api import ApiFactory


async def test_concurrent_requests_keep_each_callers_cap(
    api_factory: ApiFactory, ledger_env: dict[str, str]
) -> None:
    async with api_factory(ENVIRONMENT="production", MAX_CONCURRENT_JOBS="5", **ledger_env) as api:
        first, second = key_headers(api, "first"), key_headers(api, "second")
        requests = [(first, f"a{n}") for n in range(8)] + [(second, f"b{n}") for n in range(3)]
        answers = await asyncio.gather(
            *(
                api.client.post(f"{API}/generate", json={"prompt": prompt}, headers=headers)
                for headers, prompt in requests
            )
        )
        outcomes = Counter(
            (headers["X-Key-Id"], answer.status_code)
            for (headers, _), answer in zip(requests, answers, strict=True)
        )
        assert outcomes == {
            (first["X-Key-Id"], 202): 5,
            (first["X-Key-Id"], 429): 3,
            (second["X-Key-Id"], 202): 3,
        }
        refused = [answer.json()["code"] for answer in answers if answer.status_code == 429]
        assert refused == ["too_many_active_jobs"] * 3
        accepted = [answer.json() for answer in answers if answer.status_code == 202]
        for (_headers, prompt), answer in zip(requests, answers, strict=True):
            if answer.status_code == 202:  # each caller got its own job back, not a neighbour's
                assert answer.json()["prompt"] == prompt
                assert answer.headers["location"] == answer.json()["links"]["status"]
        with api.engine.db.session() as session:
            owners = Counter(session.scalars(select(Job.owner)))
            created = session.scalar(
                select(func.count()).select_from(JobEvent).where(JobEvent.kind == "created")
            )
        assert owners == {first["X-Key-Id"]: 5, second["X-Key-Id"]: 3}
        assert created == 8
        assert len({job["id"] for job in accepted}) == 8
        for job in accepted:  # what the 202 said is what the ledger holds
            status = await api.client.get(
                job["links"]["status"],
                headers=first if job["prompt"].startswith("a") else second,
            )
            assert status.json()["timings"]["created_at"] == job["timings"]["created_at"]
            assert status.json()["status"] == job["status"] == "pending"


async def test_a_cap_of_zero_is_no_cap(api_factory: ApiFactory, ledger_env: dict[str, str]) -> None:
    async with api_factory(ENVIRONMENT="production", MAX_CONCURRENT_JOBS="0", **ledger_env) as api:
        headers = key_headers(api, "uncapped")
        answers = await asyncio.gather(
            *(
                api.client.post(f"{API}/generate", json={"prompt": f"p{n}"}, headers=headers)
                for n in range(12)
            )
        )
        assert [answer.status_code for answer in answers] == [202] * 12
