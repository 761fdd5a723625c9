"""Scopes, publishable keys and session tokens: no credential does or hands on more than it
holds, a publishable key (or a session token bound to origins) is refused from any other web
origin, and a session token is refused once expired, tampered with, or its key revoked."""

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

import app.accounts.sessions
from app.accounts.models import ApiKey
from app.accounts.scopes import Scope
from app.accounts.service import KeyOptions, create_key, revoke_key
from app.core.db import utcnow
from app.jobs.models import Job
from tests.security.identity import AUDIENCE, SECRET, bearer, claims, hs256
from tests.stack.http_api import API, assert_problem, complete
from tests.stack.inprocess_api import ApiFactory, RunningApi

SMALL = {"width": 256, "height": 256}
TOKENS = "/api/v1/tokens"
KEYS = "/api/v1/keys"
APP = "https://app.example.com"


@pytest.fixture
async def api(api_factory: ApiFactory) -> AsyncIterator[RunningApi]:
    settings = {"ENVIRONMENT": "production", "JWT_SECRET": SECRET, "JWT_AUDIENCE": AUDIENCE}
    async with api_factory(**settings) as running:
        yield running


def key(api: RunningApi, name: str, **options: Any) -> tuple[str, dict[str, str]]:
    """A key made with `KeyOptions(**options)`: its id and its request headers."""
    with api.engine.db.session() as session:
        made, plaintext = create_key(session, name=name, options=KeyOptions(**options))
        return made.id, bearer(plaintext)


async def mint(api: RunningApi, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    response = await api.client.post(TOKENS, json={"user": "u1", **body}, headers=headers)
    assert response.status_code == 201, response.text
    minted: dict[str, Any] = response.json()
    return minted


def key_count(api: RunningApi) -> int:
    with api.engine.db.session() as session:
        return int(session.scalar(select(func.count()).select_from(ApiKey)) or 0)


async def test_scope_escalation_is_refused(api: RunningApi) -> None:
    _, reader = key(api, "reader", scopes=frozenset({Scope.JOBS_READ}))
    _, server = key(api, "server", creates_per_minute=10)
    _, admin = key(api, "admin", is_admin=True)
    _, publishable = key(api, "browser", origins=frozenset({APP}))
    post, get = api.client.post, api.client.get
    keys_before = key_count(api)

    # A read-only key reads, and nothing more; it cannot make itself a key that could.
    assert (await get(f"{API}/jobs", headers=reader)).status_code == 200
    for response, code in (
        (await post(f"{API}/generate", json={"prompt": "x"}, headers=reader), "insufficient_scope"),
        (await get(f"{API}/images/img_{'0' * 24}", headers=reader), "insufficient_scope"),
        (await get(f"{API}/queue/stats", headers=reader), "admin_required"),
        (
            await post(KEYS, json={"name": "mine", "scopes": ["admin"]}, headers=reader),
            "admin_required",
        ),
        (await get(KEYS, headers=reader), "admin_required"),
    ):
        assert_problem(response, 403, code)

    # A session token gets at most its key's scopes, never admin, and limits within the key's.
    for body, code in (
        ({"scopes": ["jobs:create"]}, "scope_not_allowed"),
        ({"scopes": ["admin"]}, "scope_not_allowed"),
    ):
        assert_problem(await post(TOKENS, json={"user": "u1", **body}, headers=reader), 403, code)
    beyond: list[tuple[dict[str, Any], str]] = [
        ({"scopes": ["admin", "jobs:read"]}, "scope_not_allowed"),
        ({"limits": {"max_priority": "high"}}, "limit_not_allowed"),
        ({"limits": {"creates_per_minute": 11}}, "limit_not_allowed"),
    ]
    for body, code in beyond:
        assert_problem(await post(TOKENS, json={"user": "u1", **body}, headers=server), 403, code)
    assert_problem(
        await post(TOKENS, json={"user": "u1", "scopes": ["admin"]}, headers=admin),
        403,
        "scope_not_allowed",
    )
    readonly = await mint(api, reader)
    assert readonly["scopes"] == ["jobs:read"]
    token = bearer(readonly["token"])
    assert_problem(
        await post(f"{API}/generate", json={"prompt": "x"}, headers=token),
        403,
        "insufficient_scope",
    )

    # Tokens and publishable keys mint nothing; tokens reach no admin route.
    session = bearer((await mint(api, server))["token"])
    for headers in (session, token):
        assert_problem(
            await post(TOKENS, json={"user": "u2"}, headers=headers), 403, "server_key_required"
        )
        assert_problem(await get(f"{API}/queue/stats", headers=headers), 403, "admin_required")
        assert_problem(await get(KEYS, headers=headers), 403, "admin_required")
    refused = await post(TOKENS, json={"user": "u2"}, headers={**publishable, "Origin": APP})
    assert_problem(refused, 403, "server_key_required")

    # A host-app JWT's `scope` narrows it; it never grants admin.
    jwt = bearer(hs256(claims(scope="admin jobs:read")))
    assert (await get(f"{API}/jobs", headers=jwt)).status_code == 200
    assert_problem(await get(f"{API}/queue/stats", headers=jwt), 403, "admin_required")
    assert_problem(
        await post(f"{API}/generate", json={"prompt": "x"}, headers=jwt), 403, "insufficient_scope"
    )

    assert key_count(api) == keys_before
    with api.engine.db.session() as db:
        assert db.query(Job).count() == 0
    # The admin key manages keys.
    made = await post(KEYS, json={"name": "made", "scopes": ["jobs:read"]}, headers=admin)
    assert made.status_code == 201, made.text
    assert made.json()["scopes"] == ["jobs:read"]
    assert key_count(api) == keys_before + 1


async def test_a_publishable_credential_is_refused_from_other_origins(api: RunningApi) -> None:
    _, publishable = key(api, "browser", origins=frozenset({APP}))
    _, server = key(api, "server")
    bound = bearer((await mint(api, server, origins=[APP]))["token"])
    jobs = f"{API}/jobs"
    for credential in (publishable, bound):
        for origin in (
            None,
            "https://evil.example",
            f"{APP}.evil.example",
            "http://app.example.com",
        ):
            headers = {**credential, **({"Origin": origin} if origin else {})}
            response = await api.client.get(jobs, headers=headers)
            assert_problem(response, 403, "origin_not_allowed")
            assert "access-control-allow-origin" not in response.headers
        allowed = await api.client.get(jobs, headers={**credential, "Origin": APP})
        assert allowed.status_code == 200, allowed.text
        assert allowed.headers["access-control-allow-origin"] == APP
        assert "RateLimit" in allowed.headers["access-control-expose-headers"]

    # A browser's preflight is answered for the key's origin, and for no other.
    asked = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    }
    preflight = await api.client.options(f"{API}/generate", headers={**asked, "Origin": APP})
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == APP
    other = await api.client.options(
        f"{API}/generate", headers={**asked, "Origin": "https://evil.example"}
    )
    assert other.status_code == 400
    assert "access-control-allow-origin" not in other.headers


async def test_session_tokens_act_for_one_user_until_they_expire_or_their_key_goes(
    api: RunningApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    key_id, server = key(api, "server")
    first = await mint(api, server, user="user-1")
    assert first["owner"] == f"{key_id}/user-1"
    assert first["expires_in"] == 900
    one, two = bearer(first["token"]), bearer((await mint(api, server, user="user-2"))["token"])

    # Create, read, follow live and fetch the image: all as user-1.
    created = await api.client.post(
        f"{API}/generate", json={"prompt": "one's fox", **SMALL}, headers=one
    )
    assert created.status_code == 202, created.text
    job = await complete(api, created.json()["id"], one)
    events = await api.client.get(f"{API}/jobs/{job['id']}/events", headers=one)
    assert events.status_code == 200
    assert "event: status" in events.text
    image = await api.client.get(job["images"][0]["url"], headers=one)
    assert image.status_code == 200
    # Another user of the same app, and the key itself, see nothing of it.
    for other in (two, server):
        assert_problem(
            await api.client.get(f"{API}/status/{job['id']}", headers=other), 404, "job_not_found"
        )
        assert_problem(
            await api.client.get(job["images"][0]["url"], headers=other), 404, "image_not_found"
        )

    # A token minted two hours ago (its 15 minutes long over) is refused.
    monkeypatch.setattr(app.accounts.sessions, "utcnow", lambda: utcnow() - timedelta(hours=2))
    stale = bearer((await mint(api, server))["token"])
    monkeypatch.undo()
    assert_problem(await api.client.get(f"{API}/jobs", headers=stale), 401, "token_expired")
    # A token whose user was changed is refused.
    head, payload, signature = first["token"].split(".")
    forged = bearer(".".join([head, payload[:-4] + "AAAA", signature]))
    assert_problem(await api.client.get(f"{API}/jobs", headers=forged), 401, "invalid_token")
    # Revoking the key ends its tokens at once, creations included.
    with api.engine.db.session() as session:
        revoke_key(session, key_id)
    for headers in (one, two):
        assert_problem(await api.client.get(f"{API}/jobs", headers=headers), 401, "invalid_token")
        response = await api.client.post(
            f"{API}/generate", json={"prompt": "after"}, headers=headers
        )
        assert_problem(response, 401, "invalid_token")


async def test_an_expired_key_and_its_tokens_are_refused(api: RunningApi) -> None:
    key_id, server = key(api, "short-lived", expires_at=utcnow() + timedelta(hours=1))
    token = bearer((await mint(api, server))["token"])
    with api.engine.db.session() as session:
        session.get_one(ApiKey, key_id).expires_at = utcnow() - timedelta(seconds=1)
    assert_problem(await api.client.get(f"{API}/jobs", headers=server), 401, "api_key_expired")
    assert_problem(await api.client.get(f"{API}/jobs", headers=token), 401, "invalid_token")


@pytest.mark.parametrize("limit", ["requests_per_minute", "creates_per_minute"])
async def test_a_limit_past_the_ledgers_integers_is_refused(api: RunningApi, limit: str) -> None:
    # Found by the schema fuzz: 2**31 reached a 32-bit column and came back as a 500.
    _, admin = key(api, "admin", is_admin=True)
    _, server = key(api, "server")
    keys_before = key_count(api)
    response = await api.client.post(KEYS, json={"name": "big", limit: 2**31}, headers=admin)
    assert_problem(response, 422, "validation_error")
    assert key_count(api) == keys_before
    token = await api.client.post(
        TOKENS, json={"user": "u1", "limits": {limit: 2**31}}, headers=server
    )
    assert_problem(token, 422, "validation_error")
