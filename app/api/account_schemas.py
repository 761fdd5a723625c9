"""What the account routes accept and return: session tokens, API keys, budgets."""

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl

from app.accounts.scopes import Scope
from app.accounts.sessions import DEFAULT_TTL_S, MAX_TTL_S
from app.accounts.tokens import MAX_LIMIT, Limits
from app.api import examples
from app.jobs.options import NO_NUL
from app.scheduler.fair import Priority

Origins = list[str] | None


class TokenRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [examples.TOKEN_REQUEST]}
    )

    user: str = Field(
        min_length=1,
        max_length=255,
        pattern=NO_NUL,
        description="Your app's id of the end user; their jobs are theirs alone.",
    )
    scopes: list[Scope] | None = Field(
        default=None, max_length=4, description="Default: the key's scopes, but `admin`."
    )
    ttl_s: int = Field(default=DEFAULT_TTL_S, ge=60, le=MAX_TTL_S, description="Lifetime in s.")
    origins: Origins = Field(
        default=None,
        max_length=20,
        description="Web origins the token is accepted from (default: any).",
    )
    limits: Limits | None = Field(
        default=None,
        description="The user's own limits: budgets, and rates and priority up to the key's.",
    )


class TokenOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [examples.TOKEN]})

    token: str = Field(description="`Authorization: Bearer <token>` until `expires_at`.")
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 - the scheme, no secret
    expires_at: datetime
    expires_in: int
    owner: str = Field(description="The owner of the jobs made with it: `<key id>/<user>`.")
    scopes: list[Scope]
    origins: list[str]


class KeyRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [examples.KEY_REQUEST]}
    )

    name: str = Field(min_length=1, max_length=100, pattern=NO_NUL)
    scopes: list[Scope] | None = Field(
        default=None, max_length=4, description="Default: every scope but `admin`."
    )
    origins: Origins = Field(
        default=None,
        max_length=20,
        description="A publishable key: accepted only from these web origins.",
    )
    expires: str | None = Field(
        default=None, max_length=8, description="Lifetime: `30d`, `12h`, `90m` (default: none)."
    )
    max_priority: Priority | None = None
    weight: float | None = Field(default=None, ge=0.01, le=100)
    requests_per_minute: int | None = Field(default=None, ge=1, le=MAX_LIMIT)
    creates_per_minute: int | None = Field(default=None, ge=1, le=MAX_LIMIT)
    daily_budget_usd: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    monthly_budget_usd: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    webhook_url: HttpUrl | None = Field(
        default=None, description="Where account events (`budget.threshold`) go."
    )


class KeyOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [examples.KEY]})

    id: str
    name: str
    prefix: str
    scopes: list[Scope]
    origins: list[str]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    max_priority: Priority | None
    weight: float | None
    requests_per_minute: int | None
    creates_per_minute: int | None
    daily_budget_usd: float | None
    monthly_budget_usd: float | None
    webhook_url: str | None


class CreatedKeyOut(KeyOut):
    model_config = ConfigDict(json_schema_extra={"examples": [examples.CREATED_KEY]})

    api_key: str = Field(description="Shown once: only its hash is stored.")
    webhook_secret: str = Field(description="Signs this key's webhooks (Standard Webhooks).")


class KeyList(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [examples.KEY_LIST]})

    items: list[KeyOut]


class BudgetOut(BaseModel):
    period: Literal["daily", "monthly"]
    budget_usd: float
    spent_usd: float = Field(description="Finished jobs' cost plus unfinished ones' estimates.")
    remaining_usd: float
    resets_at: datetime
