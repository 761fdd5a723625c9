"""Request dependencies: the engine, a unit-of-work session, the calling user, and what each
operation needs of it (a scope, a per-minute budget)."""

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPBearer
from sqlalchemy.orm import Session

from app.accounts.callers import Caller, anonymous_caller
from app.accounts.credentials import Authenticator
from app.accounts.ratelimit import Budget
from app.accounts.scopes import Scope, require_scope
from app.api.ratelimit import count_request
from app.core.errors import Forbidden, Unauthorized
from app.jobs.engine import JobEngine
from app.jobs.intake import Intake


# Dependencies without I/O are `async def`: FastAPI runs a plain `def` one in the threadpool,
# a thread hop per request for nothing (and a wait for a thread when the pool is busy).
async def get_engine(request: Request) -> JobEngine:
    engine: JobEngine = request.app.state.engine
    return engine


EngineDep = Annotated[JobEngine, Depends(get_engine)]


def get_session(engine: EngineDep) -> Iterator[Session]:
    """The request's unit of work: committed when the endpoint returns, rolled back if it raises."""
    with engine.db.session() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def presented_key(authorization: str | None, x_api_key: str | None) -> str | None:
    """The credential in `X-API-Key` or `Authorization: Bearer` (an API key, a session token
    or a JWT); None when neither is there."""
    if x_api_key:
        return x_api_key.strip()
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        raise Unauthorized(
            "use 'Authorization: Bearer <API key or token>'", code="invalid_credentials"
        )
    return None


class AuthorizationHeader(HTTPBearer):
    """`Authorization: Bearer` as an OpenAPI security scheme (Swagger's Authorize button, and
    auth in generated clients). It hands over the raw header: `presented_key` refuses other
    schemes with a clear 401, where HTTPBearer would ignore them."""

    async def __call__(self, request: Request) -> str | None:  # type: ignore[override]
        return request.headers.get("Authorization")


BEARER = AuthorizationHeader(
    auto_error=False,
    scheme_name="BearerAuth",
    description="`Authorization: Bearer <API key>`, a session token (`prs_...`) or a JWT of "
    "the host app",
)
API_KEY_HEADER = APIKeyHeader(
    name="X-API-Key", auto_error=False, scheme_name="ApiKeyAuth", description="The API key."
)


async def get_intake(request: Request) -> Intake:
    intake: Intake = request.app.state.intake
    return intake


IntakeDep = Annotated[Intake, Depends(get_intake)]


async def get_current_user_optional(
    request: Request,
    authorization: Annotated[str | None, Depends(BEARER)],
    x_api_key: Annotated[str | None, Depends(API_KEY_HEADER)],
) -> Caller | None:
    """The caller of a presented API key, session token or JWT; None when none was presented
    (the seed's name)."""
    credential = presented_key(authorization, x_api_key)
    if credential is None:
        return None
    authenticator: Authenticator = request.app.state.authenticator
    return await authenticator.caller(credential, request.headers.get("origin"))


async def get_current_user(
    engine: EngineDep, caller: Annotated[Caller | None, Depends(get_current_user_optional)]
) -> Caller:
    if caller is not None:
        return caller
    if not engine.settings.anonymous_allowed:
        raise Unauthorized("an API key is required", code="missing_api_key")
    return anonymous_caller(engine.settings)


CallerDep = Annotated[Caller, Depends(get_current_user)]


async def require_admin(caller: CallerDep) -> Caller:
    if not caller.is_admin:
        raise Forbidden("this needs an admin API key", code="admin_required")
    return caller


AdminDep = Annotated[Caller, Depends(require_admin)]


# What each operation under /api/v1 needs: a scope (None: the route checks the caller itself)
# and the per-minute budget it counts against. An operation missing here needs `admin`.
ACCESS: dict[str, tuple[Scope | None, Budget]] = {
    "generate": (Scope.JOBS_CREATE, Budget.CREATE),
    "generate_batch": (Scope.JOBS_CREATE, Budget.CREATE),
    "cancel": (Scope.JOBS_CREATE, Budget.READ),
    "delete_job": (Scope.JOBS_CREATE, Budget.READ),
    "status": (Scope.JOBS_READ, Budget.READ),
    "list_jobs": (Scope.JOBS_READ, Budget.READ),
    "get_batch": (Scope.JOBS_READ, Budget.READ),
    "job_events": (Scope.JOBS_READ, Budget.READ),  # once per stream, not per event
    "usage": (Scope.JOBS_READ, Budget.READ),
    "get_image": (Scope.IMAGES_READ, Budget.READ),
    "create_token": (None, Budget.READ),
    "list_models": (None, Budget.READ),  # any caller: a browser's model picker reads it
}


def operation_access(operation: str) -> tuple[Scope | None, Budget]:
    return ACCESS.get(operation, (Scope.ADMIN, Budget.READ))


async def authorize(request: Request, caller: CallerDep) -> None:
    """Router dependency: count the request against the caller's budget (429 past it), then
    check the operation's scope (403)."""
    route = request.scope.get("route")
    scope, budget = operation_access(getattr(route, "name", ""))
    await count_request(request.scope, request.app, caller, budget)
    if scope is not None:
        require_scope(caller.scopes, scope)
