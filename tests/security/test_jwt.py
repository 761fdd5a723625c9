"""JWTs from the host app: a token signed with JWT_SECRET (or by a key of the JWKS) acts as its
`sub`; forged, expired, not-yet-valid, wrong-audience, unsigned and key-confused tokens are
refused; the JWKS is refetched when the issuer rotates keys, and when it cannot be reached its
cached keys serve until JWT_JWKS_MAX_STALE, then 503."""

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import jwt
import pytest

from app.accounts.owners import jwt_owner
from app.jobs.models import Job
from tests.security.identity import (
    AUDIENCE,
    ISSUER,
    SECRET,
    IdentityProvider,
    bearer,
    claims,
    ec_key,
    hs256,
    identity_provider,
    rsa_key,
    signed,
)
from tests.stack.http_api import API, assert_problem, new_key
from tests.stack.inprocess_api import ApiFactory

SMALL = {"width": 256, "height": 256}


@pytest.fixture
def provider() -> Iterator[IdentityProvider]:
    with identity_provider(rsa_key("rsa-1"), ec_key("ec-1")) as running:
        yield running


def jwt_settings(provider: IdentityProvider, **extra: str) -> dict[str, str]:
    return {
        "ENVIRONMENT": "production",
        "JWT_SECRET": SECRET,
        "JWT_JWKS_URL": provider.jwks_url,
        "JWT_AUDIENCE": AUDIENCE,
        "JWT_ISSUER": ISSUER,
        **extra,
    }


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned_token(header: dict[str, Any], payload: dict[str, Any], sign: bytes | None) -> str:
    """A JWT built by hand: with `sign`, HMAC-SHA256 under those bytes; else no signature."""
    head = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}"
    if sign is None:
        return head + "."
    return head + "." + _b64(hmac.new(sign, head.encode(), hashlib.sha256).digest())


def tampered(token: str, **changes: Any) -> str:
    """The token with its payload changed and its signature kept."""
    head, payload, signature = token.split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return f"{head}.{_b64(json.dumps({**body, **changes}).encode())}.{signature}"


async def test_a_jwt_signed_with_the_secret_creates_and_reads_jobs_as_its_sub(
    api_factory: ApiFactory, provider: IdentityProvider
) -> None:
    async with api_factory(**jwt_settings(provider)) as api:
        alice, bob = bearer(hs256(claims("alice"))), bearer(hs256(claims("bob")))
        post = api.client.post
        created = await post(
            f"{API}/generate", json={"prompt": "alice's fox", **SMALL}, headers=alice
        )
        assert created.status_code == 202, created.text
        job_id = created.json()["id"]
        with api.engine.db.session() as session:
            assert session.get_one(Job, job_id).owner == jwt_owner(ISSUER, "alice")
        # Owners fit the ledger's 64 characters; a long `sub` is hashed, never cut.
        long_subs = {jwt_owner(ISSUER, "u" * 300), jwt_owner(ISSUER, "u" * 301)}
        assert len(long_subs) == 2
        assert all(len(owner) <= 64 for owner in long_subs)
        assert jwt_owner("https://other.example", "alice") != jwt_owner(ISSUER, "alice")

        status = await api.client.get(f"{API}/status/{job_id}", headers=alice)
        assert status.status_code == 200
        listed = (await api.client.get(f"{API}/jobs", headers=alice)).json()["items"]
        assert [job["id"] for job in listed] == [job_id]
        # The same user through the JWKS's RS256 and ES256 keys is the same owner.
        for key in provider.keys:
            mine = await api.client.get(
                f"{API}/status/{job_id}", headers=bearer(signed(key, claims("alice")))
            )
            assert mine.status_code == 200, mine.text

        # Another sub, and an API key beside the JWTs, see nothing of alice's.
        server = bearer(new_key(api, "server")[1])
        for other in (bob, server):
            for method, path in (
                ("GET", f"{API}/status/{job_id}"),
                ("GET", f"{API}/jobs/{job_id}/events"),
                ("DELETE", f"{API}/cancel/{job_id}"),
            ):
                assert_problem(
                    await api.client.request(method, path, headers=other), 404, "job_not_found"
                )
            assert (await api.client.get(f"{API}/jobs", headers=other)).json()["items"] == []
        # And alice's job is still hers, pending.
        assert (await api.client.get(f"{API}/status/{job_id}", headers=alice)).json()[
            "status"
        ] == "pending"


def _now() -> int:
    """Read when each token is made (not at import: a full run collects minutes before)."""
    return int(time.time())


def _without(name: str) -> dict[str, Any]:
    payload = claims()
    del payload[name]
    return payload


# (what, the token given the API's RSA key, the code of the refusal)
ATTACKS: list[tuple[str, Callable[[IdentityProvider], str], str]] = [
    ("forged: another secret", lambda p: hs256(claims(), "x" * 40), "invalid_token"),
    ("forged: sub changed", lambda p: tampered(hs256(claims("bob")), sub="alice"), "invalid_token"),
    (
        "forged: RS256 by another key, known kid",
        lambda p: signed(rsa_key("x"), claims(), kid="rsa-1"),
        "invalid_token",
    ),
    ("expired", lambda p: hs256(claims(exp=_now() - 120)), "token_expired"),
    ("not yet valid (nbf)", lambda p: hs256(claims(nbf=_now() + 600)), "invalid_token"),
    ("issued in the future", lambda p: hs256(claims(iat=_now() + 600)), "invalid_token"),
    ("wrong audience", lambda p: hs256(claims(aud="another-api")), "invalid_token"),
    ("no audience", lambda p: hs256(_without("aud")), "invalid_token"),
    ("wrong issuer", lambda p: hs256(claims(iss="https://evil.example")), "invalid_token"),
    ("no exp", lambda p: hs256(_without("exp")), "invalid_token"),
    ("no sub", lambda p: hs256(_without("sub")), "invalid_token"),
    (
        "alg none",
        lambda p: unsigned_token({"alg": "none", "typ": "JWT"}, claims(), None),
        "invalid_token",
    ),
    ("alg None", lambda p: unsigned_token({"alg": "None"}, claims(), None), "invalid_token"),
    (
        "HS256 signed with the RSA public key (key confusion)",
        lambda p: unsigned_token(
            {"alg": "HS256", "kid": "rsa-1"}, claims(), p.keys[0].public_pem()
        ),
        "invalid_token",
    ),
    (
        "HS256 signed with the JWKS document",
        lambda p: unsigned_token({"alg": "HS256"}, claims(), json.dumps(p.keys[0].jwk()).encode()),
        "invalid_token",
    ),
    (
        "ES256 header on the RSA key's kid",
        lambda p: signed(ec_key("y"), claims(), kid="rsa-1"),
        "invalid_token",
    ),
    (
        "HS384",
        lambda p: jwt.encode(claims(), SECRET * 2, algorithm="HS384"),
        "invalid_token",
    ),
    ("not a JWT", lambda p: "a.b.c", "invalid_token"),
]


async def test_forged_expired_premature_unsigned_and_confused_tokens_are_refused(
    api_factory: ApiFactory, provider: IdentityProvider
) -> None:
    async with api_factory(**jwt_settings(provider)) as api:
        for what, make, code in ATTACKS:
            headers = bearer(make(provider))
            for method, path, body in (
                ("POST", f"{API}/generate", {"prompt": "forged", **SMALL}),
                ("GET", f"{API}/jobs", None),
            ):
                response = await api.client.request(method, path, json=body, headers=headers)
                problem = assert_problem(response, 401, code)
                assert SECRET not in response.text, what
                assert problem["retryable"] is False, what
        with api.engine.db.session() as session:
            assert session.query(Job).count() == 0
        # The clock-skew leeway (30 s): just expired, and valid in a moment, still pass.
        for leeway in (claims(exp=_now() - 10), claims(nbf=_now() + 10, iat=_now() + 10)):
            response = await api.client.get(f"{API}/jobs", headers=bearer(hs256(leeway)))
            assert response.status_code == 200, response.text


async def test_jwks_rotation_is_followed_and_unknown_key_ids_do_not_hammer_it(
    api_factory: ApiFactory, provider: IdentityProvider
) -> None:
    old, ec = provider.keys
    async with api_factory(**jwt_settings(provider)) as api:
        jobs = f"{API}/jobs"
        assert (
            await api.client.get(jobs, headers=bearer(signed(old, claims())))
        ).status_code == 200
        assert provider.fetches == 1
        new = rsa_key("rsa-2")
        provider.keys = [new, ec]  # the issuer rotates: rsa-1 retired, rsa-2 signs from now on
        assert (
            await api.client.get(jobs, headers=bearer(signed(new, claims())))
        ).status_code == 200
        assert provider.fetches == 2
        retired = await api.client.get(jobs, headers=bearer(signed(old, claims())))
        assert_problem(retired, 401, "invalid_token")
        # Random key ids are refused without a fetch each.
        for n in range(5):
            made_up = await api.client.get(
                jobs, headers=bearer(signed(ec, claims(), kid=f"kid-{n}"))
            )
            assert_problem(made_up, 401, "invalid_token")
        assert provider.fetches == 2


async def test_the_jwks_found_through_oidc_discovery(
    api_factory: ApiFactory, provider: IdentityProvider
) -> None:
    settings = {"ENVIRONMENT": "production", "JWT_ISSUER": provider.url, "JWT_AUDIENCE": AUDIENCE}
    async with api_factory(**settings) as api:
        token = signed(provider.keys[1], claims(iss=provider.url))
        assert (await api.client.get(f"{API}/jobs", headers=bearer(token))).status_code == 200
        # Without JWT_SECRET, HS256 tokens are not accepted at all.
        refused = await api.client.get(
            f"{API}/jobs", headers=bearer(hs256(claims(iss=provider.url)))
        )
        assert_problem(refused, 401, "invalid_token")


async def test_an_unreachable_jwks_serves_cached_keys_then_answers_503(
    api_factory: ApiFactory, provider: IdentityProvider
) -> None:
    key, ec = provider.keys
    jobs = f"{API}/jobs"
    async with api_factory(**jwt_settings(provider, JWT_JWKS_CACHE_TTL="0.05")) as api:
        assert (
            await api.client.get(jobs, headers=bearer(signed(key, claims())))
        ).status_code == 200
        provider.stop()
        await asyncio.sleep(0.1)  # past the cache's lifetime: the next token fetches, and fails
        cached = await api.client.get(jobs, headers=bearer(signed(key, claims())))
        assert cached.status_code == 200, cached.text
        unknown = await api.client.get(jobs, headers=bearer(signed(ec, claims(), kid="new-kid")))
        problem = assert_problem(unknown, 503, "jwks_unavailable")
        assert problem["retryable"] is True
        assert int(unknown.headers["Retry-After"]) > 0
        # HS256 tokens do not need the JWKS.
        assert (await api.client.get(jobs, headers=bearer(hs256(claims())))).status_code == 200

    with identity_provider(key) as second:
        stale = jwt_settings(second, JWT_JWKS_CACHE_TTL="0.05", JWT_JWKS_MAX_STALE="0")
        async with api_factory(**stale) as api:
            assert (
                await api.client.get(jobs, headers=bearer(signed(key, claims())))
            ).status_code == 200
            second.stop()
            await asyncio.sleep(0.1)
            expired = await api.client.get(jobs, headers=bearer(signed(key, claims())))
            assert_problem(expired, 503, "jwks_unavailable")
