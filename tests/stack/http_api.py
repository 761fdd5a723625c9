"""The public API as its clients call it: the route prefix, API keys, and problem answers."""

from typing import Any

import httpx

from app.accounts.service import create_key
from tests.stack.inprocess_api import RunningApi

API = "/api/v1/runpod"
PROBLEM_JSON = "application/problem+json"


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
