"""Authentication: every route under /api/v1 refuses a missing, wrong or revoked API key with
a 401 problem and a stable code; without a key nothing is served outside development."""

import os
import subprocess
import sys

import pytest

from app.accounts.service import hash_key, revoke_key
from app.jobs.models import Job
from tests.stack.http_api import API, assert_problem, bearer, new_key
from tests.stack.inprocess_api import ApiFactory, RunningApi

# Every route that needs a caller, with a well-formed body where it takes one.
PROTECTED = [
    ("POST", f"{API}/generate", {"prompt": "a red fox"}),
    ("POST", f"{API}/generate/batch", {"prompts": ["a red fox"]}),
    ("GET", f"{API}/status/job_0123456789abcdef01234567", None),
    ("DELETE", f"{API}/cancel/job_0123456789abcdef01234567", None),
    ("GET", f"{API}/jobs", None),
    ("GET", f"{API}/jobs/job_0123456789abcdef01234567/events", None),
    ("GET", f"{API}/batches/bat_0123456789abcdef01234567", None),
    ("GET", f"{API}/images/img_0123456789abcdef01234567", None),
    ("GET", f"{API}/usage", None),
    ("GET", f"{API}/models", None),
    ("POST", f"{API}/test", None),
    ("GET", f"{API}/queue/stats", None),
    ("POST", "/api/v1/tokens", {"user": "someone"}),
    ("GET", "/api/v1/keys", None),
    ("POST", "/api/v1/keys", {"name": "another"}),
    ("DELETE", "/api/v1/keys/key_0123456789abcdef", None),
]


async def assert_every_route_refuses(
    api: RunningApi, headers: dict[str, str], status: int, code: str
) -> None:
    for method, path, body in PROTECTED:
        response = await api.client.request(method, path, json=body, headers=headers)
        assert_problem(response, status, code)
    # A refused caller left nothing behind.
    with api.engine.db.session() as session:
        assert session.query(Job).count() == 0


@pytest.mark.parametrize(
    "env",
    [
        {"ENVIRONMENT": "production"},
        {"ENVIRONMENT": "testing"},
        {"ENVIRONMENT": "development", "ALLOW_ANONYMOUS": "false"},
    ],
    ids=["production", "testing", "development-anonymous-off"],
)
async def test_no_key_is_401_missing_api_key_on_every_route(
    api_factory: ApiFactory, env: dict[str, str]
) -> None:
    async with api_factory(**env) as api:
        await assert_every_route_refuses(api, {}, 401, "missing_api_key")


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer prk_not-a-real-key"},
        {"X-API-Key": "prk_not-a-real-key"},
        {"Authorization": "Bearer "},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "prk_no_scheme"},
    ],
    ids=["unknown-bearer", "unknown-x-api-key", "empty-bearer", "basic", "no-scheme"],
)
async def test_a_wrong_key_is_401_on_every_route(
    api_factory: ApiFactory, headers: dict[str, str]
) -> None:
    code = "invalid_api_key" if "prk_not-a-real-key" in str(headers) else "invalid_credentials"
    async with api_factory(ENVIRONMENT="production") as api:
        new_key(api, "someone")  # keys exist; none of them is presented
        await assert_every_route_refuses(api, headers, 401, code)


async def test_near_misses_of_a_real_key_are_refused(api_strict: RunningApi) -> None:
    key_id, plaintext = new_key(api_strict, "alice")
    assert (await api_strict.client.get(f"{API}/jobs", headers=bearer(plaintext))).is_success
    near_misses = [
        plaintext[:-1],  # one character short
        plaintext + "x",
        plaintext.upper(),
        plaintext[:10],  # the prefix `podrelay keys list` shows
        hash_key(plaintext),  # what the database holds
        key_id,
    ]
    for candidate in near_misses:
        response = await api_strict.client.get(f"{API}/jobs", headers=bearer(candidate))
        assert_problem(response, 401, "invalid_api_key")


async def test_a_key_revoked_with_the_cli_is_refused_at_once(api_strict: RunningApi) -> None:
    key_id, plaintext = new_key(api_strict, "leaked")
    _other_id, other = new_key(api_strict, "kept")
    job = await api_strict.client.post(
        f"{API}/generate", json={"prompt": "before"}, headers=bearer(plaintext)
    )
    assert job.status_code == 202

    # `podrelay keys revoke`, in its own process, on the API's ledger (the test's environment).
    revoked = subprocess.run(
        [sys.executable, "-m", "app.cli", "keys", "revoke", key_id],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert revoked.returncode == 0, revoked.stderr
    assert revoked.stdout.strip() == f"revoked {key_id}"

    for headers in (bearer(plaintext), {"X-API-Key": plaintext}):
        for method, path, body in PROTECTED:
            response = await api_strict.client.request(method, path, json=body, headers=headers)
            assert_problem(response, 401, "invalid_api_key")
    # Only that key: the other one still works.
    assert (await api_strict.client.get(f"{API}/jobs", headers=bearer(other))).status_code == 200


async def test_a_key_revoked_through_the_accounts_service_is_refused(
    api_strict: RunningApi,
) -> None:
    key_id, plaintext = new_key(api_strict, "rotated")
    assert (await api_strict.client.get(f"{API}/usage", headers=bearer(plaintext))).is_success
    with api_strict.engine.db.session() as session:
        assert revoke_key(session, key_id) is not None
    response = await api_strict.client.get(f"{API}/usage", headers=bearer(plaintext))
    body = assert_problem(response, 401, "invalid_api_key")
    assert plaintext not in response.text
    assert body["retryable"] is False
