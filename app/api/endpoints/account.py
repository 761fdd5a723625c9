"""The account routes under `/api/v1`: session tokens for end users, and API keys (admin)."""

from fastapi import APIRouter

from app.accounts.models import ApiKey
from app.accounts.scopes import Scope, key_scopes, parse_origins
from app.accounts.service import KeyOptions, create_key, list_keys, parse_duration, revoke_key
from app.accounts.sessions import SessionRequest, issue_session
from app.accounts.tokens import Limits
from app.api import examples
from app.api.account_schemas import (
    CreatedKeyOut,
    KeyList,
    KeyOut,
    KeyRequest,
    TokenOut,
    TokenRequest,
)
from app.api.deps import CallerDep, EngineDep, SessionDep
from app.api.errors import problem_responses
from app.api.openapi_docs import json_example
from app.api.schemas import PathId
from app.core.db import utcnow
from app.core.errors import NotFound, Unprocessable

router = APIRouter()
ERRORS = problem_responses(401, 403, 422)
BODY_ERRORS = problem_responses(400, 401, 403, 408, 413, 422)  # and the body limits


@router.post(
    "/tokens",
    status_code=201,
    summary="Mint a session token for one end user of your app",
    tags=["account"],
    responses={
        **BODY_ERRORS,
        201: json_example(examples.TOKEN, "The token, for the user's browser."),
    },
)
def create_token(body: TokenRequest, caller: CallerDep, engine: EngineDep) -> TokenOut:
    """With a server key (not a publishable one): a token that creates and reads the user's own
    jobs, follows their events and fetches their images, for `ttl_s` (15 minutes)."""
    minted = issue_session(
        engine.settings,
        caller,
        SessionRequest(
            user=body.user,
            scopes=None if body.scopes is None else frozenset(body.scopes),
            origins=parse_origins(body.origins or []),
            limits=body.limits or Limits(),
            ttl_s=body.ttl_s,
        ),
    )
    return TokenOut(
        token=minted.token,
        expires_at=minted.expires_at,
        expires_in=body.ttl_s,
        owner=minted.owner,
        scopes=sorted(minted.scopes),
        origins=sorted(minted.origins),
    )


@router.get("/keys", summary="API keys", tags=["admin"], responses=ERRORS)
def list_api_keys(session: SessionDep) -> KeyList:
    """Every key, revoked ones too (never a key's secret)."""
    return KeyList(items=[key_out(key) for key in list_keys(session)])


@router.post(
    "/keys",
    status_code=201,
    summary="Create an API key",
    tags=["admin"],
    responses={
        **BODY_ERRORS,
        201: json_example(examples.CREATED_KEY, "The key; its secret once."),
    },
)
def create_api_key(body: KeyRequest, session: SessionDep) -> CreatedKeyOut:
    try:
        expires_at = utcnow() + parse_duration(body.expires) if body.expires else None
    except ValueError as error:
        raise Unprocessable(str(error), code="invalid_duration") from None
    key, plaintext = create_key(
        session,
        name=body.name,
        options=KeyOptions(
            scopes=None if body.scopes is None else frozenset(body.scopes),
            origins=parse_origins(body.origins or []),
            expires_at=expires_at,
            max_priority=body.max_priority,
            weight=body.weight,
            requests_per_minute=body.requests_per_minute,
            creates_per_minute=body.creates_per_minute,
            daily_budget_usd=body.daily_budget_usd,
            monthly_budget_usd=body.monthly_budget_usd,
            webhook_url=str(body.webhook_url) if body.webhook_url else None,
        ),
    )
    view = key_out(key).model_dump()
    return CreatedKeyOut(**view, api_key=plaintext, webhook_secret=key.webhook_secret)


@router.delete(
    "/keys/{key_id}",
    summary="Revoke an API key",
    tags=["admin"],
    responses=problem_responses(401, 403, 404, 422),
)
def revoke_api_key(key_id: PathId, session: SessionDep) -> KeyOut:
    """Requests with it, and with the session tokens it minted, get 401 from now on."""
    key = revoke_key(session, key_id)
    if key is None:
        raise NotFound("no such key", code="key_not_found")
    return key_out(key)


def key_out(key: ApiKey) -> KeyOut:
    scopes: list[Scope] = sorted(key_scopes(key.scopes, is_admin=key.is_admin))
    return KeyOut(
        id=key.id,
        name=key.name,
        prefix=key.prefix,
        scopes=scopes,
        origins=sorted((key.origins or "").split()),
        created_at=key.created_at,
        expires_at=key.expires_at,
        revoked_at=key.revoked_at,
        max_priority=key.max_priority,
        weight=key.weight,
        requests_per_minute=key.requests_per_minute,
        creates_per_minute=key.creates_per_minute,
        daily_budget_usd=key.daily_budget_usd,
        monthly_budget_usd=key.monthly_budget_usd,
        webhook_url=key.webhook_url,
    )
