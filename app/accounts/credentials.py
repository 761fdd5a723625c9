"""From a presented credential to its caller, per API process.

- `prs_...`: a session token (`app.accounts.sessions`), whose key must still be live;
- three dot-separated parts: a JWT of the host app, when JWT_SECRET, JWT_JWKS_URL or
  JWT_ISSUER is set;
- anything else: an API key, looked up by its SHA-256.

A credential bound to web origins (a publishable key, a session token minted with origins) is
refused unless the request's `Origin` is one of them. Concurrent requests' keys are looked up
with one query (`app.core.batching`).
"""

from app.accounts.callers import Caller, callers_by_hash, callers_by_id, jwt_caller, session_caller
from app.accounts.scopes import check_origin
from app.accounts.service import hash_key
from app.accounts.sessions import SESSION_PREFIX, read_session
from app.accounts.tokens import HostTokens, host_tokens_accepted, looks_like_jwt
from app.core.batching import GroupRunner
from app.core.config import Settings
from app.core.db import Database
from app.core.errors import PodrelayError, Unauthorized


class Authenticator:
    def __init__(self, settings: Settings, db: Database) -> None:
        self._settings = settings
        self._db = db
        self._by_hash: GroupRunner[str, Caller] = GroupRunner(self._look_up_hashes)
        self._by_id: GroupRunner[str, Caller] = GroupRunner(self._look_up_ids)
        self._host = HostTokens(settings) if host_tokens_accepted(settings) else None

    async def caller(self, credential: str, origin: str | None) -> Caller:
        """The caller the credential stands for; raises the refusal (401, 403, 503)."""
        settings = self._settings
        if credential.startswith(SESSION_PREFIX):
            claims = read_session(settings, credential)
            try:
                key = await self._by_id.run(claims.key_id)
            except PodrelayError:
                raise Unauthorized(
                    "the key that minted this session token was revoked or has expired",
                    code="invalid_token",
                ) from None
            caller = session_caller(key, claims, settings)
        elif looks_like_jwt(credential):
            if self._host is None:
                raise Unauthorized(
                    "JWTs are not accepted here (JWT_SECRET, JWT_JWKS_URL and JWT_ISSUER are "
                    "unset)",
                    code="invalid_token",
                )
            caller = jwt_caller(await self._host.verify(credential), settings)
        else:
            caller = await self._by_hash.run(hash_key(credential))
        check_origin(caller.origins, origin)
        return caller

    async def _look_up_hashes(self, hashes: list[str]) -> list[Caller | PodrelayError]:
        return await self._db.run(callers_by_hash, self._settings, hashes)

    async def _look_up_ids(self, ids: list[str]) -> list[Caller | PodrelayError]:
        return await self._db.run(callers_by_id, self._settings, ids)

    async def aclose(self) -> None:
        if self._host is not None:
            await self._host.aclose()
