"""CORS for the origins of CORS_ORIGINS and of every live publishable key.

A browser asks before it sends a cross-origin request with an `Authorization` header (the
preflight carries no credential), so the answer cannot depend on the key: the origins allowed
are CORS_ORIGINS plus those of all live publishable keys, read from the ledger when a request
comes from an origin not allowed yet (at most every `MISS_REFRESH_S`) and at least every
`REFRESH_S`. This only lets browsers read the answers; whether a key may be used from an origin
is decided for each request (`app.accounts.scopes.check_origin`).
"""

import math
import time
from collections.abc import Collection

from loguru import logger
from sqlalchemy.exc import SQLAlchemyError
from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from app.accounts.ratelimit import HEADER_NAMES
from app.accounts.service import publishable_origins

REFRESH_S = 30.0
MISS_REFRESH_S = 1.0
# What a browser page may send, and read back, across origins.
REQUEST_HEADERS = (
    "Authorization",
    "X-API-Key",
    "Content-Type",
    "Idempotency-Key",
    "Prefer",
    "Last-Event-ID",
)
RESPONSE_HEADERS = ("Location", "Preference-Applied", "Retry-After", *HEADER_NAMES)


class PublishableCORS(CORSMiddleware):
    def __init__(self, app: ASGIApp, *, origins: Collection[str]) -> None:
        super().__init__(
            app,
            allow_origins=origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=list(REQUEST_HEADERS),
            expose_headers=list(RESPONSE_HEADERS),
            max_age=600,
        )
        self._published: frozenset[str] = frozenset()
        self._read_at = -math.inf

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self.allow_all_origins:
            origin = Headers(scope=scope).get("origin")
            age = time.monotonic() - self._read_at
            if origin and (age >= REFRESH_S or (age >= MISS_REFRESH_S and not self._known(origin))):
                await self._read(scope)
        await super().__call__(scope, receive, send)

    def is_allowed_origin(self, origin: str) -> bool:
        return self._known(origin) or super().is_allowed_origin(origin)

    def _known(self, origin: str) -> bool:
        return origin in self._published or origin in self.allow_origins

    async def _read(self, scope: Scope) -> None:
        self._read_at = time.monotonic()
        try:
            origins = await scope["app"].state.engine.db.run(publishable_origins)
        except SQLAlchemyError as error:  # the origins read last keep serving
            logger.warning("CORS: publishable keys' origins not read: {}", error)
            return
        self._published = frozenset(origins)
