"""The public REST API, in-process over ASGI, with the engine driven by the test."""

import asyncio
import json
from io import BytesIO
from typing import Any

import pytest
from PIL import Image

from app.accounts.service import revoke_key
from app.core.db import utcnow
from app.jobs.models import JobImage
from app.jobs.submit import submit_job
from app.jobs.tracking import tick
from app.simulator.server import SimulatorServer
from tests.factories import add_job
from tests.stack.http_api import API, complete, finish, key_headers
from tests.stack.inprocess_api import RunningApi

SMALL = {"width": 256, "height": 256}


async def test_seed_request_completes_with_a_png(api: RunningApi) -> None:
    response = await api.client.post(f"{API}/generate", json={"prompt": "beautiful anime girl"})
    assert response.status_code == 202
    job = response.json()
    assert job["status"] == "pending"
    assert response.headers["location"] == f"{API}/status/{job['id']}"
    done = await finish(api, job["id"])
    assert done["status"] == "completed"
    assert done["cost"]["gpu_seconds"] > 0
    image = await api.client.get(done["images"][0]["url"])
    assert image.status_code == 200
    assert image.headers["content-type"] == "image/png"
    assert Image.open(BytesIO(image.content)).size == (1024, 1024)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"prompt": ""}, "prompt"),
        ({"prompt": "x" * 2001}, "prompt"),
        ({"prompt": "x", "width": 1001}, "width"),
        ({"prompt": "x", "height": 4096}, "height"),
        ({"prompt": "x", "num_inference_steps": 0}, "num_inference_steps"),
        ({"prompt": "x", "guidance_scale": -1}, "guidance_scale"),
        ({"prompt": "x", "num_images": 9}, "num_images"),
        ({"prompt": "x", "seed": -5}, "seed"),
        ({"prompt": "x", "webhook_url": "ftp://example.com"}, "webhook_url"),
        ({"prompt": "x", "surprise": True}, "surprise"),
        ({}, "prompt"),
    ],
)
async def test_bad_input_is_a_structured_422(
    api: RunningApi, body: dict[str, Any], field: str
) -> None:
    response = await api.client.post(f"{API}/generate", json=body)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == "validation_error"
    assert problem["retryable"] is False
    assert any(error["loc"][-1] == field for error in problem["errors"])


async def test_malformed_json_is_a_4xx(api: RunningApi) -> None:
    response = await api.client.post(
        f"{API}/generate", content=b'{"prompt": ', headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"


async def test_batch_of_ten_and_eleven(api: RunningApi) -> None:
    prompts = [f"prompt {n}" for n in range(10)]
    response = await api.client.post(f"{API}/generate/batch", json={"prompts": prompts, **SMALL})
    assert response.status_code == 202
    batch = response.json()
    assert [job["prompt"] for job in batch["jobs"]] == prompts
    assert batch["counts"] == {"pending": 10}
    assert response.headers["Location"] == f"{API}/batches/{batch['id']}"
    eleven = await api.client.post(f"{API}/generate/batch", json={"prompts": [*prompts, "x"]})
    assert eleven.status_code == 422
    for job in batch["jobs"]:
        await submit_job(api.engine, job["id"])
    view = (await api.client.get(f"{API}/batches/{batch['id']}")).json()
    assert view["size"] == 10
    assert sum(view["counts"].values()) == 10


async def test_users_see_and_cancel_only_their_own_jobs(api: RunningApi) -> None:
    alice, bob = key_headers(api, "alice"), key_headers(api, "bob")
    job = (await api.client.post(f"{API}/generate", json={"prompt": "mine"}, headers=alice)).json()
    for method, path in [
        ("GET", f"{API}/status/{job['id']}"),
        ("DELETE", f"{API}/cancel/{job['id']}"),
        ("GET", f"{API}/jobs/{job['id']}/events"),
    ]:
        response = await api.client.request(method, path, headers=bob)
        assert response.status_code == 404, path
        assert response.json()["code"] == "job_not_found"
    assert (await api.client.get(f"{API}/jobs", headers=bob)).json()["items"] == []
    mine = (await api.client.get(f"{API}/jobs", headers=alice)).json()["items"]
    assert [item["id"] for item in mine] == [job["id"]]
    assert (await api.client.get(f"{API}/status/{job['id']}", headers=alice)).status_code == 200
    done = await complete(api, job["id"], alice)
    image_url = done["images"][0]["url"]
    assert (await api.client.get(image_url, headers=bob)).status_code == 404
    assert (await api.client.get(image_url, headers=alice)).status_code == 200


async def test_keys_wrong_revoked_and_admin_scope(api: RunningApi) -> None:
    user, admin = key_headers(api, "user"), key_headers(api, "ops", admin=True)
    wrong = {"Authorization": "Bearer prk_not-a-real-key"}
    assert (await api.client.get(f"{API}/jobs", headers=wrong)).status_code == 401
    assert (
        await api.client.get(f"{API}/jobs", headers={"Authorization": "Basic x"})
    ).status_code == 401
    forbidden = await api.client.get(f"{API}/queue/stats", headers=user)
    assert (forbidden.status_code, forbidden.json()["code"]) == (403, "admin_required")
    stats = await api.client.get(f"{API}/queue/stats", headers=admin)
    assert stats.status_code == 200
    assert "jobs_by_status" in stats.json()
    with api.engine.db.session() as session:
        revoke_key(session, user["X-Key-Id"])
    revoked = await api.client.get(f"{API}/jobs", headers=user)
    assert (revoked.status_code, revoked.json()["code"]) == (401, "invalid_api_key")


async def test_idempotent_replay_and_conflict(api: RunningApi) -> None:
    headers = {"Idempotency-Key": "order-42"}
    body = {"prompt": "same request", **SMALL}
    first = await api.client.post(f"{API}/generate", json=body, headers=headers)
    again = await api.client.post(f"{API}/generate", json=body, headers=headers)
    assert first.status_code == again.status_code == 202
    assert first.json()["id"] == again.json()["id"]
    assert (first.json()["replayed"], again.json()["replayed"]) == (False, True)
    other = await api.client.post(f"{API}/generate", json={**body, "seed": 1}, headers=headers)
    # The IETF Idempotency-Key draft: the same key with another body is 422.
    assert (other.status_code, other.json()["code"]) == (422, "idempotency_key_reused")
    jobs = (await api.client.get(f"{API}/jobs")).json()["items"]
    assert len(jobs) == 1


async def test_sse_streams_every_change_and_resumes(api: RunningApi) -> None:
    job_id = (await api.client.post(f"{API}/generate", json={"prompt": "live", **SMALL})).json()[
        "id"
    ]
    await finish(api, job_id)
    events = await read_events(api, job_id)
    assert [event["status"] for event in events][-1] == "completed"
    assert events[0]["kind"] == "created"
    resumed = await read_events(api, job_id, last_event_id=events[1]["id"])
    assert resumed == events[2:]


async def read_events(
    api: RunningApi, job_id: str, *, last_event_id: str | None = None
) -> list[dict[str, str]]:
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    events: list[dict[str, str]] = []
    async with api.client.stream("GET", f"{API}/jobs/{job_id}/events", headers=headers) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        current: dict[str, str] = {}
        async for line in response.aiter_lines():
            if not line:
                if "id" in current:
                    events.append(current)
                current = {}
                continue
            field, _, value = line.partition(": ")
            if field in ("id", "event"):
                current["id" if field == "id" else "kind"] = value
            elif field == "data":
                current["status"] = json.loads(value)["status"]
    return events


async def test_cancel_then_conflict_when_finished(api: RunningApi) -> None:
    job_id = (await api.client.post(f"{API}/generate", json={"prompt": "stop me"})).json()["id"]
    cancelled = await api.client.delete(f"{API}/cancel/{job_id}")
    assert (cancelled.status_code, cancelled.json()["status"]) == (200, "cancelled")
    assert (await api.client.delete(f"{API}/cancel/{job_id}")).status_code == 200
    done_id = (await api.client.post(f"{API}/generate", json={"prompt": "done", **SMALL})).json()[
        "id"
    ]
    await finish(api, done_id)
    conflict = await api.client.delete(f"{API}/cancel/{done_id}")
    assert (conflict.status_code, conflict.json()["code"]) == (409, "job_finished")


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/hook",
        "http://localhost/hook",
        "http://169.254.169.254/latest",
        "http://[::1]/x",
    ],
)
async def test_private_webhook_urls_are_refused(api_strict: RunningApi, url: str) -> None:
    response = await api_strict.client.post(
        f"{API}/generate",
        json={"prompt": "x", "webhook_url": url},
        headers=key_headers(api_strict, "k"),
    )
    assert response.status_code == 400
    assert response.json()["code"] == "webhook_url_refused"


async def test_too_many_active_jobs_is_a_429_with_retry_after(api_strict: RunningApi) -> None:
    headers = key_headers(api_strict, "busy")
    statuses = [
        (await api_strict.client.post(f"{API}/generate", json={"prompt": f"p{n}"}, headers=headers))
        for n in range(3)
    ]
    assert [r.status_code for r in statuses] == [202, 202, 429]
    assert statuses[2].headers["retry-after"] == "5"
    assert statuses[2].json()["code"] == "too_many_active_jobs"
    assert statuses[2].json()["retryable"] is True


async def test_no_key_is_refused_outside_development(api_strict: RunningApi) -> None:
    response = await api_strict.client.post(f"{API}/generate", json={"prompt": "x"})
    assert (response.status_code, response.json()["code"]) == (401, "missing_api_key")


async def test_prefer_wait_answers_200_with_the_result(
    api: RunningApi, simulator: SimulatorServer
) -> None:
    simulator.set_faults(job_duration_ms=100, job_duration_jitter_ms=0)

    async def drive() -> None:
        for _ in range(200):
            jobs = (await api.client.get(f"{API}/jobs")).json()["items"]
            for job in jobs:
                if job["status"] == "pending":
                    await submit_job(api.engine, job["id"])
            await tick(api.engine)
            await asyncio.sleep(0.05)

    driver = asyncio.create_task(drive())
    response = await api.client.post(
        f"{API}/generate", json={"prompt": "quick", **SMALL}, headers={"Prefer": "wait=20"}
    )
    driver.cancel()
    assert response.status_code == 200
    assert response.headers["Preference-Applied"] == "wait=20"
    assert response.json()["status"] == "completed"


async def test_connection_test_and_usage(api: RunningApi) -> None:
    result = (await api.client.post(f"{API}/test")).json()
    assert (result["ok"], result["key_accepted"]) == (True, True)
    job_id = (
        await api.client.post(f"{API}/generate", json={"prompt": "billable", **SMALL})
    ).json()["id"]
    await finish(api, job_id)
    [day] = (await api.client.get(f"{API}/usage")).json()["days"]
    assert (day["jobs"], day["completed"], day["images"]) == (1, 1, 1)
    assert day["gpu_seconds"] > 0
    assert day["estimated_usd"] > 0


async def test_an_image_still_downloading_redirects_to_its_origin(api: RunningApi) -> None:
    origin = "http://127.0.0.1:9/results/origin.png"
    with api.engine.db.session() as session:
        job = add_job(session, owner="anonymous", prompt="p", timeout_s=60)
        pending = JobImage(
            id="img_pending", job_id=job.id, index=0, state="pending", source_url=origin,
            download_attempts=0, created_at=utcnow(),
        )  # fmt: skip
        failed = JobImage(
            id="img_failed", job_id=job.id, index=1, state="failed", source_url=origin,
            download_attempts=3, created_at=utcnow(),
        )  # fmt: skip
        session.add_all([pending, failed])
    answer = await api.client.get(f"{API}/images/img_pending")
    assert answer.status_code == 307
    assert answer.headers["location"] == origin
    assert answer.headers["cache-control"] == "no-store"
    gone = await api.client.get(f"{API}/images/img_failed")
    assert gone.status_code == 404
    assert gone.json()["code"] == "image_not_stored"
