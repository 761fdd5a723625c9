"""The host app's public keys (a JWKS), fetched over HTTPS and kept per API process.

The JWKS comes from JWT_JWKS_URL, or from the `jwks_uri` of JWT_ISSUER's OpenID discovery
document. Its keys are used for JWT_JWKS_CACHE_TTL, then fetched again; a token naming a key
id the set lacks triggers a fetch at once (the issuer rotated its keys), at most once per
`UNKNOWN_KID_COOLDOWN_S` so random key ids cannot make Podrelay hammer the issuer; after a
failed fetch, none is tried for `RETRY_AFTER_S`. Only RSA keys for RS256 and P-256 keys for
ES256 are taken; symmetric (`oct`) keys in a JWKS are ignored.

When the JWKS does not answer, the keys already fetched keep serving for JWT_JWKS_MAX_STALE
past their refresh; after that, or for a key never seen, the answer is 503 `jwks_unavailable`
(retryable), never a 401 that would log users out.
"""

import asyncio
import math
import time
from typing import Any

import httpx
from jwt import PyJWK
from jwt.exceptions import PyJWKError
from loguru import logger

from app.core.config import Settings
from app.core.errors import PodrelayError, Unauthorized

ACCEPTED = {"RS256": "RSA", "ES256": "EC"}
UNKNOWN_KID_COOLDOWN_S = 10.0
FETCH_TIMEOUT_S = 5.0
RETRY_AFTER_S = 10.0
_MAX_BYTES = 512 * 1024


class JwksUnavailable(PodrelayError):
    status_code, code, title, retryable = 503, "jwks_unavailable", "JWKS unavailable", True


class JwksKeys:
    """The JWKS's keys by key id, fetched when needed (see the module)."""

    def __init__(self, settings: Settings) -> None:
        self._url = settings.jwt_jwks_url
        self._issuer = settings.jwt_issuer
        self._ttl = settings.jwt_jwks_cache_ttl
        self._max_stale = settings.jwt_jwks_max_stale
        self._keys: dict[str | None, PyJWK] = {}
        self._fetched_at = -math.inf  # the last successful fetch
        self._failed_at = -math.inf  # the last failed one
        self._unknown_fetched_at = -math.inf  # the last fetch for a key id not in the set
        self._lock = asyncio.Lock()
        self._client = httpx.AsyncClient(timeout=FETCH_TIMEOUT_S, follow_redirects=False)

    async def key(self, key_id: str | None, algorithm: str) -> PyJWK:
        """The key that signed a token with this `kid` and `alg` (see the module)."""
        now = time.monotonic()
        known = self._find(key_id, algorithm)
        if known is not None and now - self._fetched_at < self._ttl:
            return known
        # A key id the set lacks: the issuer may have rotated its keys.
        rotated = known is None and bool(self._keys)
        may_fetch = now - self._failed_at >= RETRY_AFTER_S and (
            not rotated or now - self._unknown_fetched_at >= UNKNOWN_KID_COOLDOWN_S
        )
        if may_fetch:
            if rotated:
                self._unknown_fetched_at = now
            async with self._lock:
                if max(self._fetched_at, self._failed_at) <= now:  # nobody tried meanwhile
                    await self._refresh()
        found = self._find(key_id, algorithm)
        if found is not None and time.monotonic() - self._fetched_at < self._ttl + self._max_stale:
            return found  # fresh, or stale while the JWKS does not answer
        if self._failed_at > self._fetched_at:
            raise JwksUnavailable(
                "the identity provider's keys (JWKS) cannot be fetched; retry later",
                retry_after=RETRY_AFTER_S,
            )
        raise _unknown(key_id)

    async def _refresh(self) -> None:
        try:
            keys = await self._fetch()
        except (httpx.HTTPError, ValueError) as error:
            self._failed_at = time.monotonic()
            logger.warning("the JWKS cannot be fetched: {}", error)
            return
        self._keys, self._fetched_at = keys, time.monotonic()

    async def _fetch(self) -> dict[str | None, PyJWK]:
        url = self._url or await self._discovered_jwks_url()
        document = await self._get_json(url)
        keys: dict[str | None, PyJWK] = {}
        for entry in document.get("keys", []) if isinstance(document, dict) else []:
            key = _usable(entry)
            if key is not None:
                keys[key.key_id] = key
        if not keys:
            raise ValueError(f"no RS256 or ES256 signing key in the JWKS at {url}")
        return keys

    async def _discovered_jwks_url(self) -> str:
        assert self._issuer is not None
        discovery = self._issuer.rstrip("/") + "/.well-known/openid-configuration"
        document = await self._get_json(discovery)
        url = document.get("jwks_uri") if isinstance(document, dict) else None
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise ValueError(f"no jwks_uri in {discovery}")
        self._url = url
        return url

    async def _get_json(self, url: str) -> Any:
        response = await self._client.get(url, headers={"Accept": "application/json"})
        response.raise_for_status()
        if len(response.content) > _MAX_BYTES:
            raise ValueError(f"{url} answered more than {_MAX_BYTES} bytes")
        return response.json()

    def _find(self, key_id: str | None, algorithm: str) -> PyJWK | None:
        key = self._keys.get(key_id)
        if key is None and key_id is None and len(self._keys) == 1:
            key = next(iter(self._keys.values()))  # a token without `kid`, a JWKS of one key
        if key is None or key.algorithm_name != algorithm:
            return None
        return key

    async def aclose(self) -> None:
        await self._client.aclose()


def _usable(entry: Any) -> PyJWK | None:
    if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
        return None
    kty = entry.get("kty")
    algorithm = entry.get("alg") or ("RS256" if kty == "RSA" else "ES256" if kty == "EC" else None)
    if algorithm not in ACCEPTED or ACCEPTED[algorithm] != kty:
        return None
    try:
        return PyJWK(entry, algorithm)
    except PyJWKError:
        return None


def _unknown(key_id: str | None) -> Unauthorized:
    return Unauthorized(
        f"the token's signing key {key_id!r} is not in the issuer's JWKS", code="invalid_token"
    )
