"""Pure helpers of the RunPod client: error mapping and retry timing. No I/O here."""

import email.utils
import random
import time
from typing import Any

import httpx

from app.runpod.errors import (
    AuthenticationError,
    NotFoundError,
    RateLimitError,
    RequestRejectedError,
    RunPodAPIError,
    RunPodConnectionError,
    RunPodTimeoutError,
    ServerError,
)

INITIAL_RETRY_DELAY = 0.5
MAX_RETRY_DELAY = 8.0
# A longer Retry-After than this is handed back to the caller instead of being slept through.
MAX_RETRY_AFTER = 60.0
_BODY_EXCERPT = 300


def decode_body(response: httpx.Response) -> Any:
    """Return the JSON body, or the text when it is not JSON (RunPod's 429s may be bare)."""
    try:
        return response.json()
    except ValueError:
        return response.text[:_BODY_EXCERPT]


def error_from_response(response: httpx.Response, operation: str) -> RunPodAPIError:
    """Map an HTTP error answer to the client's error tree."""
    body = decode_body(response)
    code = response.status_code
    detail = _detail(body) or response.reason_phrase or "no detail"
    where = f"RunPod {operation} answered {code}"
    if code in (401, 403):
        return AuthenticationError(
            f"{where}: the API key was refused ({detail})", status_code=code, body=body
        )
    if code == 404:
        return NotFoundError(f"{where}: not found ({detail})", status_code=code, body=body)
    if code == 429:
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        return RateLimitError(
            f"{where}: rate limited ({detail})", body=body, retry_after=retry_after
        )
    if code >= 500:
        return ServerError(f"{where}: server error ({detail})", status_code=code, body=body)
    return RequestRejectedError(
        f"{where}: request rejected ({detail})", status_code=code, body=body
    )


def error_from_transport(exc: httpx.HTTPError, operation: str) -> RunPodConnectionError:
    """Map an httpx transport failure; the message names the failure, not the URL's secrets."""
    kind = type(exc).__name__
    if isinstance(exc, httpx.TimeoutException):
        return RunPodTimeoutError(f"RunPod {operation} timed out ({kind})")
    reason = str(exc) or kind
    return RunPodConnectionError(f"could not reach RunPod for {operation}: {reason}")


def request_surely_unsent(exc: httpx.HTTPError) -> bool:
    """True when the failure happened before the request could reach the server."""
    return isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)


def parse_retry_after(value: str | None) -> float | None:
    """Read a Retry-After header given in seconds or as an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def retry_delay(
    attempt: int,
    error: Exception,
    *,
    initial: float = INITIAL_RETRY_DELAY,
    cap: float = MAX_RETRY_DELAY,
) -> float | None:
    """Seconds to wait before retry number `attempt` (0-based), or None to give up now.

    Exponential backoff with jitter, raised to the server's Retry-After when it sent one.
    """
    backoff = min(cap, initial * 2.0**attempt)
    # Jitter keeps many workers that failed together from retrying together.
    delay = backoff * random.uniform(0.5, 1.0)  # noqa: S311 - not security sensitive
    if isinstance(error, RateLimitError) and error.retry_after is not None:
        if error.retry_after > MAX_RETRY_AFTER:
            return None
        delay = max(delay, error.retry_after)
    return delay


def _detail(body: Any) -> str:
    if isinstance(body, dict):
        for key in ("error", "message", "detail"):
            if body.get(key):
                return str(body[key])[:_BODY_EXCERPT]
        return ""
    return str(body).strip()[:_BODY_EXCERPT]


def is_job_object(body: Any) -> bool:
    """Public endpoints answer a FAILED runsync with 400 and a full job object."""
    return isinstance(body, dict) and "id" in body and "status" in body
