"""Tenancy: a key sees and touches only its own jobs. Another key (an admin one too) gets the
same 404 for A's resources as for ones that do not exist, and A's job is untouched after."""

from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import func, select

from app.jobs.models import Job, JobEvent
from tests.stack.http_api import API, assert_problem, bearer, complete, new_key
from tests.stack.inprocess_api import ApiFactory, RunningApi

SMALL = {"width": 256, "height": 256}


@dataclass
class Owned:
    """What key A owns: a finished job with a stored image, a pending job and a batch."""

    headers: dict[str, str]
    done_job: str
    image_url: str
    pending_job: str
    batch_id: str


async def owned_by_a(api: RunningApi) -> Owned:
    headers = bearer(new_key(api, "tenant-a")[1])
    post = api.client.post
    done = (
        await post(f"{API}/generate", json={"prompt": "a's fox", **SMALL}, headers=headers)
    ).json()
    view = await complete(api, done["id"], headers)
    pending = (await post(f"{API}/generate", json={"prompt": "a's secret"}, headers=headers)).json()
    batch = (
        await post(f"{API}/generate/batch", json={"prompts": ["a1", "a2"]}, headers=headers)
    ).json()
    return Owned(headers, done["id"], view["images"][0]["url"], pending["id"], batch["id"])


def ledger_snapshot(api: RunningApi, job_id: str) -> tuple[Any, ...]:
    with api.engine.db.session() as session:
        job = session.get_one(Job, job_id)
        events = session.scalar(
            select(func.count()).select_from(JobEvent).where(JobEvent.job_id == job_id)
        )
        return (job.status, job.owner, job.error_code, job.finished_at, events)


@pytest.fixture
async def production(api_factory: ApiFactory) -> Any:
    async with api_factory(ENVIRONMENT="production") as running:
        yield running


@pytest.mark.parametrize("admin", [False, True], ids=["other-key", "other-admin-key"])
async def test_another_key_cannot_read_a_s_jobs(production: RunningApi, admin: bool) -> None:
    api = production
    a = await owned_by_a(api)
    b = bearer(new_key(api, "tenant-b", admin=admin)[1])
    before = [ledger_snapshot(api, job_id) for job_id in (a.done_job, a.pending_job)]

    nobody = "0" * 24  # the ids of things that do not exist
    for template, owned_id, code in [
        (f"{API}/status/{{}}", a.done_job, "job_not_found"),
        (f"{API}/status/{{}}", a.pending_job, "job_not_found"),
        (f"{API}/jobs/{{}}/events", a.done_job, "job_not_found"),
        (f"{API}/batches/{{}}", a.batch_id, "batch_not_found"),
        (f"{API}/images/{{}}", a.image_url.rsplit("/", 1)[1], "image_not_found"),
        (f"{API}/jobs?cursor={{}}", a.pending_job, "invalid_cursor"),
    ]:
        response = await api.client.get(template.format(owned_id), headers=b)
        body = assert_problem(response, 404, code)
        # The same answer as for an id that does not exist: nothing says A's exists.
        missing = await api.client.get(template.format(f"job_{nobody}"), headers=b)
        assert missing.json() == body
        for secret in ("a's fox", "a's secret", "a1"):
            assert secret not in response.text

    listing = await api.client.get(f"{API}/jobs", headers=b)
    assert listing.json() == {"items": [], "next_cursor": None}
    by_batch = await api.client.get(f"{API}/jobs?batch_id={a.batch_id}", headers=b)
    assert by_batch.json()["items"] == []
    usage = await api.client.get(f"{API}/usage", headers=b)
    assert usage.json()["days"] == []

    after = [ledger_snapshot(api, job_id) for job_id in (a.done_job, a.pending_job)]
    assert after == before
    # A still sees everything (the refusals above were about B, not broken routes).
    assert (await api.client.get(a.image_url, headers=a.headers)).status_code == 200
    assert (await api.client.get(f"{API}/batches/{a.batch_id}", headers=a.headers)).is_success
    mine = (await api.client.get(f"{API}/jobs", headers=a.headers)).json()["items"]
    assert len(mine) == 4


async def test_another_key_cannot_cancel_a_s_job(production: RunningApi) -> None:
    api = production
    a = await owned_by_a(api)
    b = bearer(new_key(api, "tenant-b")[1])
    before = ledger_snapshot(api, a.pending_job)

    for job_id in (a.pending_job, a.done_job):
        response = await api.client.delete(f"{API}/cancel/{job_id}", headers=b)
        assert_problem(response, 404, "job_not_found")

    assert ledger_snapshot(api, a.pending_job) == before
    view = (await api.client.get(f"{API}/status/{a.pending_job}", headers=a.headers)).json()
    assert view["status"] == "pending"
    # A can cancel it: the route works, it was B who was refused.
    cancelled = await api.client.delete(f"{API}/cancel/{a.pending_job}", headers=a.headers)
    assert cancelled.json()["status"] == "cancelled"


async def test_an_idempotency_key_is_scoped_to_its_owner(production: RunningApi) -> None:
    api = production
    a, b, c = (bearer(new_key(api, name)[1]) for name in ("tenant-a", "tenant-b", "tenant-c"))
    body = {"prompt": "a's request", **SMALL}
    key = {"Idempotency-Key": "order-1"}
    first = await api.client.post(f"{API}/generate", json=body, headers={**a, **key})
    assert first.status_code == 202
    # B sending A's Idempotency-Key (guessed or leaked) with A's body is no replay of A's job.
    same = await api.client.post(f"{API}/generate", json=body, headers={**b, **key})
    assert same.status_code == 202, same.text
    assert same.json()["id"] != first.json()["id"]
    assert same.json()["replayed"] is False
    # With another body it is no 409 either, which would tell C that someone used that key.
    other = await api.client.post(f"{API}/generate", json={**body, "seed": 3}, headers={**c, **key})
    assert other.status_code == 202, other.text
    mine = (await api.client.get(f"{API}/jobs", headers=a)).json()["items"]
    assert [job["id"] for job in mine] == [first.json()["id"]]
