"""Forged RunPod webhooks. RunPod signs nothing: the per-submission token in the URL is the
secret, and a body is applied only to the RunPod job that submission made. Every forgery is
refused and leaves the ledger as it was; the genuine delivery, sent last, is applied."""

import asyncio
import secrets
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from app.jobs import service
from app.jobs.models import Job, JobEvent, JobImage, Submission
from app.simulator.server import SimulatorServer
from tests.factories import add_job
from tests.security.helpers import submitted_job
from tests.stack.http_api import assert_problem
from tests.stack.inprocess_api import RunningApi

SMALL = {"width": 256, "height": 256}


def orphan_job(api: RunningApi) -> tuple[str, str]:
    """A job whose POST /run answer was lost: its submission knows no RunPod id yet."""
    with api.engine.db.session() as session:
        job = add_job(session, owner="anonymous", prompt="orphan", timeout_s=60)
        submission = service.new_submission(session, job)
        submission.outcome = "ambiguous"
        return job.id, submission.token


async def genuine_body(simulator: SimulatorServer, runpod_id: str) -> dict[str, Any]:
    """The job object RunPod would deliver for `runpod_id`, once it has finished there."""
    url = f"{simulator.base_url}/api-ep/status/{runpod_id}"
    async with httpx.AsyncClient(headers={"Authorization": "Bearer test-key"}) as client:
        for _ in range(200):
            body: dict[str, Any] = (await client.get(url)).json()
            if body["status"] == "COMPLETED":
                return body
            await asyncio.sleep(0.05)
    raise AssertionError(f"{runpod_id} did not complete at the simulator")


def ledger(api: RunningApi) -> list[tuple[Any, ...]]:
    """Every job's state, events, images and submissions, to compare before and after."""
    with api.engine.db.session() as session:
        jobs = [
            (job.id, job.status, job.runpod_job_id, job.error_code, job.finished_at)
            for job in session.scalars(select(Job).order_by(Job.id))
        ]
        events = [(e.job_id, e.kind, e.status) for e in session.scalars(select(JobEvent))]
        images = [(i.job_id, i.state) for i in session.scalars(select(JobImage))]
        submissions = [
            (s.job_id, s.token, s.runpod_job_id) for s in session.scalars(select(Submission))
        ]
        return [*jobs, *events, *images, *submissions]


@pytest.fixture
async def two_jobs(
    api: RunningApi, simulator: SimulatorServer
) -> tuple[RunningApi, dict[str, Any], dict[str, Any]]:
    """Jobs A and B, both accepted by the simulator and finished there, neither yet in the
    ledger; with A's token and genuine completion body."""
    a_id, a_token, a_runpod = await submitted_job(api, "job a")
    b_id, b_token, b_runpod = await submitted_job(api, "job b")
    a = {"id": a_id, "token": a_token, "body": await genuine_body(simulator, a_runpod)}
    b = {"id": b_id, "token": b_token, "body": await genuine_body(simulator, b_runpod)}
    return api, a, b


async def post(api: RunningApi, token: str, body: Any) -> httpx.Response:
    return await api.client.post(f"/webhooks/runpod/{token}", json=body)


async def assert_refused_and_ledger_unchanged(
    api: RunningApi, token: str, body: Any, status: int, code: str
) -> None:
    before = ledger(api)
    assert_problem(await post(api, token, body), status, code)
    assert ledger(api) == before


async def test_an_unknown_token_is_refused(two_jobs: Any) -> None:
    api, a, _ = two_jobs
    for token in (secrets.token_urlsafe(24), a["token"][:-1] + "A", a["token"].upper()):
        if token != a["token"]:
            await assert_refused_and_ledger_unchanged(
                api, token, a["body"], 404, "webhook_rejected"
            )
    await assert_genuine_delivery_applies(api, a)


async def test_a_missing_or_malformed_token_is_refused(two_jobs: Any) -> None:
    api, a, _ = two_jobs
    for path in ("/webhooks/runpod/", "/webhooks/runpod", "/webhooks/runpod//"):
        before = ledger(api)
        response = await api.client.post(path, json=a["body"])
        assert_problem(response, 404, "not_found")
        assert ledger(api) == before
    for token in ("short", "x" * 65, "%00" * 16):
        await assert_refused_and_ledger_unchanged(api, token, a["body"], 422, "validation_error")
    await assert_genuine_delivery_applies(api, a)


async def test_a_genuine_body_replayed_to_another_job_s_url_is_refused(two_jobs: Any) -> None:
    api, a, b = two_jobs
    await assert_refused_and_ledger_unchanged(api, b["token"], a["body"], 409, "webhook_rejected")
    # Also after A's own delivery was applied: B never takes A's result.
    await assert_genuine_delivery_applies(api, a)
    await assert_refused_and_ledger_unchanged(api, b["token"], a["body"], 409, "webhook_rejected")
    await assert_genuine_delivery_applies(api, b)


async def test_a_body_for_another_runpod_job_is_refused(two_jobs: Any) -> None:
    api, a, _ = two_jobs
    forged = {**a["body"], "id": "forged-" + secrets.token_hex(8)}
    await assert_refused_and_ledger_unchanged(api, a["token"], forged, 409, "webhook_rejected")
    for malformed in ({**a["body"], "id": None}, [a["body"]], "COMPLETED", 42):
        await assert_refused_and_ledger_unchanged(
            api, a["token"], malformed, 400, "webhook_rejected"
        )
    await assert_refused_and_ledger_unchanged(api, a["token"], None, 422, "validation_error")
    await assert_genuine_delivery_applies(api, a)


async def test_a_job_with_a_lost_run_answer_does_not_adopt_another_job_s_result(
    two_jobs: Any,
) -> None:
    """A submission whose /run answer was lost adopts the RunPod id of the first body that
    arrives with its token; never one that already belongs to another submission."""
    api, a, _ = two_jobs
    orphan_id, orphan_token = orphan_job(api)
    await assert_refused_and_ledger_unchanged(api, orphan_token, a["body"], 409, "webhook_rejected")
    await assert_genuine_delivery_applies(api, a)
    await assert_refused_and_ledger_unchanged(api, orphan_token, a["body"], 409, "webhook_rejected")
    with api.engine.db.session() as session:
        assert session.get_one(Job, orphan_id).status == "pending"


async def assert_genuine_delivery_applies(api: RunningApi, job: dict[str, Any]) -> None:
    """The control: the token and body that belong together are accepted and applied."""
    response = await post(api, job["token"], job["body"])
    assert response.status_code == 200, response.text
    assert response.json() == {"received": True, "changed": True}
    with api.engine.db.session() as session:
        assert session.get_one(Job, job["id"]).status == "completed"
