"""`POST /api/v1/runpod/generate` in its common form, without FastAPI's per-request machinery.

Most submissions are one JSON prompt with an API key and nothing else. For them, routing,
dependency injection, the response model's second validation and our three middlewares cost
more CPU than recording the job (see `bench/submit.py`), so this ASGI layer, outside all of them
(only FastAPI's own error and telemetry layers are outside it), serves them itself with the very
functions those use: `GenerateRequest`, the intake, the rate limiter, `check_options`, the
application's exception handlers for every error, the body limits (`app.api.limits`), the
rate-limit headers and the request metrics. Its rate-limit count and its job share one group
(`Intake.accept_counted`): one wait per request, and groups twice the size.

Everything else goes on through the middlewares to the route in
`app.api.endpoints.runpod_endpoints`, which stays the reference and the documented operation:
requests with `Idempotency-Key`, `Prefer` or a `webhook_url`, anonymous ones, those without a
`Content-Length` or over the body limit, and those with an invalid body or an unknown key, so
these refusals are the route's own answers (nothing was counted or recorded before the
hand-over).
Errors past that point (rate limit, options, capacity, an unreachable ledger) are answered by
the application's exception handlers, as they are for the route.
"""

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request
from pydantic import ValidationError
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.callers import Caller
from app.api.deps import presented_key
from app.api.errors import ApiError
from app.api.intake import CountedRequest, NewJob, intake_of
from app.api.limits import BodyLimits, answer_refusal, content_length, too_slow
from app.api.ratelimit import caller_key, keep_rate_limit_headers, rate_limit_headers
from app.api.schemas import GenerateRequest, JobOut
from app.api.submissions import check_options
from app.api.views import API_PREFIX
from app.core.metrics import observe_http_request

PATH = f"{API_PREFIX}/generate"
_HANDED_OVER = (b"idempotency-key", b"prefer")
_JSON = b"application/json"
_JOB_JSON = JobOut.__pydantic_serializer__


class FastGenerate:
    """ASGI middleware: serves plain keyed `POST /generate` requests, passes on the rest."""

    def __init__(self, app: ASGIApp, *, limits: BodyLimits) -> None:
        self.app = app
        self.max_bytes = limits.max_bytes_for(PATH)
        self.body_timeout_s = limits.timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        key = _plain_submission_key(scope)
        declared = content_length(scope) if key is not None else None
        if key is None or declared is None or declared > self.max_bytes:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.body_timeout_s):
                body = await _read_body(receive)
        except TimeoutError:
            await answer_refusal(too_slow(self.body_timeout_s), scope, receive, send)
            observe_http_request(PATH, "POST", 408, time.perf_counter() - started)
            return
        if body is None:
            return  # the client went away
        answer = await _submit(scope, key, body)
        if answer is None:
            await self.app(scope, _replay(body, receive), send)
            return
        if headers := rate_limit_headers(scope):
            answer.headers.update(headers)
        await answer(scope, receive, send)
        observe_http_request(PATH, "POST", answer.status_code, time.perf_counter() - started)


def _plain_submission_key(scope: Scope) -> str | None:
    """The API key of a keyed JSON `POST /generate` with nothing this layer hands over."""
    if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST":
        return None
    authorization = x_api_key = None
    for name, value in scope["headers"]:
        if name in _HANDED_OVER:
            return None
        if name == b"authorization":
            authorization = value.decode("latin-1")
        elif name == b"x-api-key":
            x_api_key = value.decode("latin-1")
        elif name == b"content-type" and value.partition(b";")[0].strip().lower() != _JSON:
            return None  # FastAPI reads `+json` types and no content type as JSON too
    try:
        return presented_key(authorization, x_api_key)
    except ApiError:
        return None


async def _submit(scope: Scope, key: str, body: bytes) -> Response | None:
    """The answer to a plain submission, or None to hand it to the route."""
    try:
        request = GenerateRequest.model_validate_json(body)
    except ValidationError:
        return None
    if request.webhook_url is not None:
        return None  # checking it resolves a host name: the route does that in a thread
    application: FastAPI = scope["app"]
    intake = intake_of(application)
    try:
        caller = await intake.recent_caller(key)
        if caller is None:
            return None
        counted = await intake.accept_counted(_counted_request(scope, application, caller, request))
        keep_rate_limit_headers(scope, counted.hit)
        if isinstance(counted.outcome, Exception):
            raise counted.outcome
        view = counted.outcome
    except Exception as error:  # noqa: BLE001 - answered by the application's own handler
        return await _handled(application, scope, error)
    return Response(
        _JOB_JSON.to_json(view),
        status_code=202,
        media_type="application/json",
        headers={"Location": view.links.status},
    )


def _counted_request(
    scope: Scope, application: FastAPI, caller: Caller, request: GenerateRequest
) -> CountedRequest:
    """The request to count and its job; its options' refusal is answered only after the
    count, as the route answers it after its rate-limit dependency."""
    job: NewJob | ApiError
    try:
        timeout_s = check_options(application.state.engine.settings, request)
    except ApiError as refusal:
        job = refusal
    else:
        job = NewJob(caller=caller, body=request, timeout_s=timeout_s)
    return CountedRequest(caller=caller, rate_key=caller_key(scope, caller.owner), job=job)


async def _handled(application: FastAPI, scope: Scope, error: Exception) -> Response:
    for kind in type(error).__mro__:
        handler = application.exception_handlers.get(kind)
        if handler is not None:
            answer = handler(Request(scope), error)
            return await answer if inspect.isawaitable(answer) else answer
    raise error


async def _read_body(receive: Receive) -> bytes | None:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Callable[[], Awaitable[Message]]:
    """`receive` for the route: the body already read, then whatever the client sends."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replayed() -> Message:
        if pending:
            return pending.pop()
        return await receive()

    return replayed
