"""Rate limits over HTTP: each `/api/v1` request is counted against one of its caller's budgets
(`app.accounts.ratelimit`: `create` for submissions, `read` for the rest), and every answer to
it carries the IETF draft's structured-field headers (draft-ietf-httpapi-ratelimit-headers):
`RateLimit-Policy: "read";q=<limit>;w=60` and `RateLimit: "read";r=<remaining>;t=<seconds to
reset>`; a small ASGI middleware adds them, so error answers, files and event streams get them
too.

A caller is its API key (its owner id), or for anonymous requests `anonymous:<client IP>`.
Behind a reverse proxy, run uvicorn with `--proxy-headers --forwarded-allow-ips=<proxy>` so
the client IP of anonymous callers is the real one and not the proxy's.
"""

from starlette.applications import Starlette
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.accounts.callers import ANONYMOUS, Caller
from app.accounts.ratelimit import (
    Budget,
    Hit,
    MemoryRateLimiter,
    RateLimiter,
    counter_key,
    over_limit,
)

_SCOPE_KEY = "podrelay.ratelimit"


def rate_limiter_of(application: Starlette) -> RateLimiter:
    state = application.state
    limiter: RateLimiter | None = getattr(state, "rate_limiter", None)
    if limiter is None:  # the lifespan normally sets it; an app without one still limits
        limiter = state.rate_limiter = MemoryRateLimiter()
    return limiter


def caller_key(scope: Scope, owner: str) -> str:
    if owner != ANONYMOUS:
        return owner
    client = scope.get("client")
    return f"{ANONYMOUS}:{client[0] if client else 'unknown'}"


async def count_request(
    scope: Scope, application: Starlette, caller: Caller, budget: Budget
) -> None:
    """Count the request against the caller's budget; raises `RateLimited` past it."""
    limiter = rate_limiter_of(application)
    limit = caller.creates_per_minute if budget is Budget.CREATE else caller.requests_per_minute
    hit = await limiter.hit(counter_key(budget, caller_key(scope, caller.owner)), limit)
    keep_rate_limit_headers(scope, hit, budget)
    if refusal := over_limit(hit, budget):
        raise refusal


def keep_rate_limit_headers(scope: Scope, hit: Hit, budget: Budget) -> None:
    """Leave the hit's headers for the request's answer (whatever it is)."""
    scope[_SCOPE_KEY] = hit.headers(budget)


def rate_limit_headers(scope: Scope) -> dict[str, str] | None:
    """The headers `count_request` left for this request's answer, if it counted it."""
    headers: dict[str, str] | None = scope.get(_SCOPE_KEY)
    return headers


class RateLimitHeadersMiddleware:
    """Adds the headers `count_request` left in the scope to whatever answer is sent."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                values = rate_limit_headers(scope)
                if values:
                    _set_headers(message, values)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _set_headers(message: Message, values: dict[str, str]) -> None:
    """Set `values` on a response start message, replacing headers of the same names."""
    added = [
        (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in values.items()
    ]
    names = {name for name, _ in added}
    kept = [pair for pair in message.get("headers", ()) if pair[0].lower() not in names]
    message["headers"] = kept + added
