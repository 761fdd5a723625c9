"""Bearer tokens besides API keys: the host app's JWTs (checked here), and what Podrelay's own
session tokens hold (minted and read by `app.accounts.sessions`).

**Host-app JWTs.** HS256 tokens signed with JWT_SECRET, and RS256/ES256 tokens signed by a key
of the JWKS (`app.accounts.jwks`). The algorithm decides the key: HS256 is checked only
against JWT_SECRET, RS256/ES256 only against the JWKS, so a token cannot pass an RSA public key
off as an HMAC secret, and `none` is never accepted. `exp` and `sub` are required; `nbf`,
`iat`, `aud` (JWT_AUDIENCE) and `iss` (JWT_ISSUER) are checked with JWT_LEEWAY of clock skew.
`sub` becomes the owner, namespaced by issuer (`app.accounts.owners`). An OAuth `scope` claim
narrows what the token may do (never to `admin`), and a `podrelay` claim may carry the user's
limits (`Limits`).

"""

from dataclasses import dataclass
from typing import Any

import jwt
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.accounts.jwks import JwksKeys
from app.accounts.owners import jwt_owner
from app.accounts.scopes import USER_SCOPES, Scope
from app.core.config import Settings
from app.core.errors import Unauthorized
from app.scheduler.fair import Priority

LIMITS_CLAIM = "podrelay"


# The largest rate or concurrency limit (higher is no limit in practice); it also keeps each
# value inside the ledger's 32-bit integer columns.
MAX_LIMIT = 1_000_000


class Limits(BaseModel):
    """A user's limits, from a JWT's `podrelay` claim or a session token request."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_priority: Priority | None = None
    requests_per_minute: int | None = Field(default=None, ge=1, le=MAX_LIMIT)
    creates_per_minute: int | None = Field(default=None, ge=1, le=MAX_LIMIT)
    max_concurrent_jobs: int | None = Field(default=None, ge=0, le=MAX_LIMIT)
    daily_budget_usd: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    monthly_budget_usd: float | None = Field(default=None, ge=0, allow_inf_nan=False)


@dataclass(frozen=True)
class HostClaims:
    owner: str
    scopes: frozenset[Scope]
    limits: Limits


@dataclass(frozen=True)
class SessionClaims:
    key_id: str
    owner: str
    scopes: frozenset[Scope]
    origins: frozenset[str]
    limits: Limits


def looks_like_jwt(credential: str) -> bool:
    return credential.count(".") == 2


def host_tokens_accepted(settings: Settings) -> bool:
    return bool(settings.jwt_secret or settings.jwt_jwks_url or settings.jwt_issuer)


class HostTokens:
    """Per API process: checks the host app's JWTs (see the module)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        secret = settings.jwt_secret
        self._secret = secret.get_secret_value() if secret else None
        asymmetric = settings.jwt_jwks_url or settings.jwt_issuer
        self._jwks = JwksKeys(settings) if asymmetric else None

    async def verify(self, token: str) -> HostClaims:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise invalid_token("the token is not a well-formed JWT") from None
        algorithm = header.get("alg")
        key: Any
        if algorithm == "HS256" and self._secret is not None:
            key = self._secret
        elif algorithm in ("RS256", "ES256") and self._jwks is not None:
            kid = header.get("kid")
            key = await self._jwks.key(kid if isinstance(kid, str) else None, algorithm)
        else:
            raise invalid_token(f"tokens signed with {algorithm!r} are not accepted")
        settings = self._settings
        claims = decode(
            token,
            key,
            algorithm=str(algorithm),
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            leeway=settings.jwt_leeway,
        )
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise invalid_token("the token's `sub` is not a string")
        issuer = claims.get("iss")
        return HostClaims(
            owner=jwt_owner(issuer if isinstance(issuer, str) else None, subject),
            scopes=_host_scopes(claims),
            limits=limits_claim(claims.get(LIMITS_CLAIM)),
        )

    async def aclose(self) -> None:
        if self._jwks is not None:
            await self._jwks.aclose()


def decode(
    token: str,
    key: Any,
    *,
    algorithm: str,
    audience: str | None,
    issuer: str | None,
    leeway: float,
) -> dict[str, Any]:
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[algorithm],
            audience=audience,
            issuer=issuer,
            leeway=leeway,
            options={"require": ["exp", "sub"]},
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("the token has expired", code="token_expired") from None
    except jwt.ImmatureSignatureError:
        raise invalid_token("the token is not valid yet (nbf or iat)") from None
    except jwt.InvalidAudienceError:
        raise invalid_token("the token is for another audience (aud)") from None
    except jwt.InvalidIssuerError:
        raise invalid_token("the token is from another issuer (iss)") from None
    except jwt.MissingRequiredClaimError as error:
        raise invalid_token(f"the token has no {error.claim!r} claim") from None
    except jwt.PyJWTError:
        raise invalid_token("the token's signature or claims are not valid") from None
    return claims


def _host_scopes(claims: dict[str, Any]) -> frozenset[Scope]:
    granted = claims.get("scope", claims.get("scp"))
    if granted is None:
        return USER_SCOPES
    names = granted.split() if isinstance(granted, str) else granted
    if not isinstance(names, list):
        raise invalid_token("the token's `scope` is neither a string nor a list")
    return frozenset(scope for scope in USER_SCOPES if scope.value in names)


def limits_claim(claim: Any) -> Limits:
    if claim is None:
        return Limits()
    try:
        return Limits.model_validate(claim)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise invalid_token(f"the token's {LIMITS_CLAIM}.{where} claim: {first['msg']}") from None


def invalid_token(detail: str) -> Unauthorized:
    return Unauthorized(detail, code="invalid_token")
