"""The in-process API as tests call it: the route prefix, API keys, problem answers, and a
job driven to its end as a worker would."""

import asyncio
from typing import Any

import httpx

from app.accounts.service import create_key
from app.jobs.dispatch import Dispatcher
from app.jobs.submit import submit_job
from app.jobs.tracking import tick
from tests.stack.inprocess_api import RunningApi

API = "/api/v1/runpod"
PROBLEM_JSON = "application/problem+json"
TERMINAL = ("completed", "failed", "cancelled", "timed_out")


def new_key(
    api: RunningApi, name: str, *, admin: bool = False, requests_per_minute: int | None = None
) -> tuple[str, str]:
    """A fresh API key in the API's ledger: (its id, its plaintext)."""
    with api.engine.db.session() as session:
        key, plaintext = create_key(session, name=name, is_admin=admin)
        if requests_per_minute is not None:
            key.requests_per_minute = requests_per_minute
        return key.id, plaintext


def bearer(plaintext: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {plaintext}"}


def key_headers(api: RunningApi, name: str, *, admin: bool = False) -> dict[str, str]:
    """A fresh key's request headers, with its id as `X-Key-Id` for the test's bookkeeping."""
    key_id, plaintext = new_key(api, name, admin=admin)
    return {**bearer(plaintext), "X-Key-Id": key_id}


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The answer is `status` as `application/problem+json` with the stable `code`."""
    assert response.status_code == status, (response.status_code, response.text[:500])
    assert response.headers["content-type"] == PROBLEM_JSON, response.headers
    body: dict[str, Any] = response.json()
    assert (body["status"], body["code"]) == (status, code), body
    return body


async def finish(
    api: RunningApi, job_id: str, headers: dict[str, str] | None = None, *, timeout: float = 20.0
) -> dict[str, Any]:
    """Drive the engine as a worker would until the job ends with no image download left;
    returns the job as `GET /status` shows it to `headers`."""
    await submit_job(api.engine, job_id)
    dispatcher = Dispatcher(api.engine)  # resubmits what a failed attempt left pending
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        await dispatcher.dispatch_round()
        await tick(api.engine)
        response = await api.client.get(f"{API}/status/{job_id}", headers=headers or {})
        body: dict[str, Any] = response.json()
        if body["status"] in TERMINAL and all(i["state"] != "pending" for i in body["images"]):
            return body
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish")


async def complete(
    api: RunningApi, job_id: str, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """`finish` for a job that must complete with every image stored."""
    body = await finish(api, job_id, headers)
    assert body["status"] == "completed", body
    assert all(image["state"] == "stored" for image in body["images"]), body
    return body


def rate_limit(response: httpx.Response, policy: str = "read") -> dict[str, int]:
    """The parameters of an answer's `RateLimit-Policy` and `RateLimit` fields for the budget
    it counted against (`read` or `create`): `q` (the limit), `w` (the window), `r` (requests
    remaining) and `t` (seconds until the reset)."""
    found: dict[str, int] = {}
    for name in ("RateLimit-Policy", "RateLimit"):
        item, *parameters = response.headers[name].split(";")
        assert item == f'"{policy}"', response.headers[name]
        found |= {key: int(value) for key, value in (p.split("=") for p in parameters)}
    return found
