"""Session tokens: what a host app's backend hands one of its end users' browsers.

`POST /api/v1/tokens`, called with a server key (not a publishable one, not a token), mints a
token for one end user: `prs_` + an HS256 JWT signed with SESSION_TOKEN_SECRET (or a key
derived from MEDIA_URL_SECRET), valid 15 minutes by default and a day at most. It holds the
key's id, the user, its scopes (at most the key's, never `admin`), optional web origins, and
optional limits (at most the key's priority and rates; budgets are the user's own). Its owner
is `<key id>/<user>` (`app.accounts.owners`): each end user sees only their own jobs. Revoking
the key ends its session tokens at once; an expired token gets 401 `token_expired`.
"""

import hashlib
import hmac
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import jwt

from app.accounts.callers import Caller, Credential
from app.accounts.owners import session_owner
from app.accounts.scopes import USER_SCOPES, Scope, delegable, parse_origins
from app.accounts.tokens import (
    LIMITS_CLAIM,
    Limits,
    SessionClaims,
    decode,
    invalid_token,
    limits_claim,
)
from app.core.config import Settings
from app.core.db import utcnow
from app.core.errors import Forbidden
from app.scheduler.fair import Priority

SESSION_PREFIX = "prs_"
SESSION_ISSUER = "podrelay"
SESSION_AUDIENCE = "podrelay-session"
DEFAULT_TTL_S = 900
MAX_TTL_S = 24 * 3600
LEEWAY_S = 5.0  # between API replicas' clocks


@dataclass(frozen=True)
class SessionRequest:
    user: str
    scopes: frozenset[Scope] | None = None  # None: the key's, but admin
    origins: frozenset[str] = frozenset()
    limits: Limits = field(default_factory=Limits)
    ttl_s: int = DEFAULT_TTL_S


@dataclass(frozen=True)
class MintedSession:
    token: str
    owner: str
    scopes: frozenset[Scope]
    origins: frozenset[str]
    expires_at: datetime


def issue_session(settings: Settings, caller: Caller, request: SessionRequest) -> MintedSession:
    """A session token for one end user of the caller's app; 403 when the caller may not hand
    on what the request asks for."""
    if caller.credential is not Credential.KEY or caller.key_id is None:
        raise Forbidden("session tokens are minted with an API key", code="server_key_required")
    if caller.origins:
        raise Forbidden(
            "a publishable key cannot mint session tokens; use a server key",
            code="server_key_required",
        )
    held = caller.scopes & USER_SCOPES
    scopes = held if request.scopes is None else delegable(caller.scopes, request.scopes)
    if not scopes:
        raise Forbidden("the token would have no scope", code="scope_not_allowed")
    _check_limits(request.limits, caller)
    now = utcnow()
    expires_at = now + timedelta(seconds=request.ttl_s)
    claims: dict[str, Any] = {
        "iss": SESSION_ISSUER,
        "aud": SESSION_AUDIENCE,
        "sub": request.user,
        "key": caller.key_id,
        "scope": " ".join(sorted(scope.value for scope in scopes)),
        "iat": int(now.timestamp()),
        "exp": int(expires_at.timestamp()),
    }
    if request.origins:
        claims["origins"] = sorted(request.origins)
    if request.limits != Limits():
        claims[LIMITS_CLAIM] = request.limits.model_dump(mode="json", exclude_none=True)
    token = jwt.encode(claims, _secret(settings), algorithm="HS256")
    return MintedSession(
        token=SESSION_PREFIX + token,
        owner=session_owner(caller.key_id, request.user),
        scopes=scopes,
        origins=request.origins,
        expires_at=expires_at,
    )


def read_session(settings: Settings, token: str) -> SessionClaims:
    """The claims of a session token Podrelay minted; 401 for any other or an expired one."""
    claims = decode(
        token.removeprefix(SESSION_PREFIX),
        _secret(settings),
        algorithm="HS256",
        audience=SESSION_AUDIENCE,
        issuer=SESSION_ISSUER,
        leeway=LEEWAY_S,
    )
    key_id, user = claims.get("key"), claims["sub"]
    scope, origins = claims.get("scope", ""), claims.get("origins", [])
    if not (isinstance(key_id, str) and isinstance(scope, str) and isinstance(origins, list)):
        raise invalid_token("the session token's claims are not Podrelay's")
    return SessionClaims(
        key_id=key_id,
        owner=session_owner(key_id, str(user)),
        scopes=frozenset(s for s in USER_SCOPES if s.value in scope.split()),
        origins=parse_origins(str(origin) for origin in origins),
        limits=limits_claim(claims.get(LIMITS_CLAIM)),
    )


def _secret(settings: Settings) -> bytes:
    if settings.session_token_secret is not None:
        return settings.session_token_secret.get_secret_value().encode()
    media = settings.media_url_secret.get_secret_value().encode()
    return hmac.new(media, b"podrelay session tokens v1", hashlib.sha256).digest()


def _check_limits(limits: Limits, caller: Caller) -> None:
    """Refuse (403) limits past the key's own priority and rates."""
    ceiling: Priority = caller.max_priority
    if limits.max_priority is not None and limits.max_priority.rank < ceiling.rank:
        raise Forbidden(
            f"the key may hand on priority {ceiling.value} at most", code="limit_not_allowed"
        )
    for asked, allowed, name in (
        (limits.requests_per_minute, caller.requests_per_minute, "requests_per_minute"),
        (limits.creates_per_minute, caller.creates_per_minute, "creates_per_minute"),
    ):
        if asked is not None and asked > allowed:
            raise Forbidden(
                f"the key may hand on {name} {allowed} at most", code="limit_not_allowed"
            )
