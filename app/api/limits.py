"""Request body bounds: size (413 `payload_too_large`) and upload time (408 `request_timeout`).

A pure ASGI middleware in front of every route. A `Content-Length` over the limit is refused
before any byte of the body is read; a body without one (chunked, streamed) is counted while
the application reads it and refused as soon as it passes the limit, so at most
`limit + one chunk` is ever held. Reading the body must finish within `timeout_s` of its first
read, which bounds clients that trickle a body to hold a connection and a worker.

Refusing works whatever the application does with the failed read (FastAPI turns any body
error into its own 400): once the guard refused a body, the application's answer is dropped
and the problem answer is sent instead, unless the application had already started answering.
"""

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.errors import problem_response
from app.core.errors import PayloadTooLarge, PodrelayError, RequestTimeout

# RunPod's job webhooks carry the job's output, which may hold base64 images of several MB;
# they get this limit instead of `MAX_REQUEST_BYTES` (RunPod's own /runsync payload cap is 20 MB).
RUNPOD_WEBHOOK_PREFIX = "/webhooks/runpod/"
RUNPOD_WEBHOOK_MAX_BYTES = 64 * 1024 * 1024


class _BodyRefused(Exception):
    """Raised from `receive` once the body is over the limit or too slow."""


@dataclass(frozen=True)
class BodyLimits:
    max_bytes: int
    timeout_s: float
    # (path prefix, max bytes) pairs that replace `max_bytes`; the first match wins.
    overrides: Sequence[tuple[str, int]] = ()

    def max_bytes_for(self, path: str) -> int:
        for prefix, limit in self.overrides:
            if path.startswith(prefix):
                return limit
        return self.max_bytes


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, *, limits: BodyLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes = self.limits.max_bytes_for(scope["path"])
        declared = content_length(scope)
        if declared is not None and declared > max_bytes:
            await answer_refusal(_too_large(max_bytes), scope, receive, send)
            return

        guard = _BodyGuard(receive, max_bytes, self.limits.timeout_s)
        answered = False

        async def guarded_send(message: Message) -> None:
            nonlocal answered
            if guard.refusal is not None and not answered:
                return  # the application's answer to a refused body is replaced below
            if message["type"] == "http.response.start":
                answered = True
            await send(message)

        try:
            await self.app(scope, guard.receive, guarded_send)
        except Exception:
            if guard.refusal is None or answered:
                raise
        if guard.refusal is not None and not answered:
            await answer_refusal(guard.refusal, scope, receive, send)


class _BodyGuard:
    """Wraps `receive`: counts body bytes and bounds the time until the body is complete."""

    def __init__(self, receive: Receive, max_bytes: int, timeout_s: float) -> None:
        self._receive = receive
        self._max_bytes = max_bytes
        self._timeout_s = timeout_s
        self._received = 0
        self._deadline: float | None = None
        self._complete = False
        self.refusal: PodrelayError | None = None

    async def receive(self) -> Message:
        if self._complete:
            # After the body only `http.disconnect` can come; waiting for it is not bounded.
            return await self._receive()
        if self.refusal is not None:
            raise _BodyRefused(self.refusal.detail)
        loop = asyncio.get_running_loop()
        if self._deadline is None:
            self._deadline = loop.time() + self._timeout_s
        try:
            async with asyncio.timeout_at(self._deadline):
                message = await self._receive()
        except TimeoutError:
            self.refusal = too_slow(self._timeout_s)
            raise _BodyRefused(self.refusal.detail) from None
        if message["type"] != "http.request":
            self._complete = True  # http.disconnect
            return message
        self._received += len(message.get("body", b""))
        if self._received > self._max_bytes:
            self.refusal = _too_large(self._max_bytes)
            raise _BodyRefused(self.refusal.detail)
        if not message.get("more_body", False):
            self._complete = True
        return message


def content_length(scope: Scope) -> int | None:
    """The request's declared body length; None without a valid `Content-Length`."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server rejects a malformed length before we are called
    return None


def too_slow(timeout_s: float) -> PodrelayError:
    return RequestTimeout(f"the request body was not received within {timeout_s:g} s")


def _too_large(max_bytes: int) -> PodrelayError:
    return PayloadTooLarge(f"the request body is larger than {max_bytes} bytes")


async def answer_refusal(error: PodrelayError, scope: Scope, receive: Receive, send: Send) -> None:
    """Answer a refused body; the connection is closed after it."""
    response = problem_response(
        error.status_code,
        error.code,
        error.title,
        error.detail,
        retryable=error.retryable,
        # The rest of the body is not read: the connection cannot carry another request.
        headers={"Connection": "close"},
    )
    await response(scope, receive, send)
