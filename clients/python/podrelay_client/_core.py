"""What the sync and async clients share: the calls, the retry rule, the event-stream reader.

The clients only do the I/O; every decision is made here, once.
"""

import math
import random
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import BaseModel

from podrelay_client import __version__
from podrelay_client.errors import ApiConnectionError, InvalidApiUrl, WaitTimeout, error_of
from podrelay_client.models import GenerationOptions, Image, JobEvent, Model

API_PREFIX = "/api/v1/runpod"
MAX_PREFER_WAIT_S = 60  # the API holds a `Prefer: wait` request at most this long
READ_TIMEOUT_S = 30.0
STREAM_READ_TIMEOUT_S = 45.0  # the event stream sends a keep-alive comment every 15 s


def timeout(read_s: float) -> httpx.Timeout:
    return httpx.Timeout(30.0, connect=10.0, read=read_s)


DEFAULT_TIMEOUT = timeout(READ_TIMEOUT_S)
USER_AGENT = f"podrelay-client-python/{__version__}"
SETTLE_POLL_S = 0.5  # between status reads while a finished job's images are being stored


@dataclass(frozen=True)
class Call:
    """One API request, as both clients send it."""

    method: str
    path: str
    json: Any = None
    params: Mapping[str, str | int] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout: httpx.Timeout = field(default_factory=lambda: DEFAULT_TIMEOUT)


def client_options(base_url: str, api_key: str | None) -> dict[str, Any]:
    """The keyword arguments of the `httpx.Client` (or `AsyncClient`) of a Podrelay client."""
    try:
        httpx.URL(base_url)
    except httpx.InvalidURL as error:
        raise InvalidApiUrl(str(error)) from None
    headers = {"User-Agent": USER_AGENT}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return {"base_url": base_url.rstrip("/"), "headers": headers, "timeout": DEFAULT_TIMEOUT}


def _job_path(kind: str, job_id: str) -> str:
    return f"{API_PREFIX}/{kind}/{quote(job_id, safe='')}"


def _idempotency_key(given: str | None) -> dict[str, str]:
    # Every submission carries an Idempotency-Key (a fresh one unless given), so a retry after
    # a lost answer replays the first job instead of starting a second one.
    return {"Idempotency-Key": given or f"podrelay-py-{uuid.uuid4()}"}


def wait_seconds(wait: bool | float) -> float | None:
    """`generate(wait=...)`: True waits as long as the job takes; a number, that many seconds."""
    return None if wait is True else float(wait)


def generate_call(
    prompt: str, options: GenerationOptions, idempotency_key: str | None, wait: bool | float
) -> Call:
    """With `wait`, the API holds the answer until the job ends (at most 60 s or `wait`)."""
    body = {"prompt": prompt, **_present(options)}
    headers = _idempotency_key(idempotency_key)
    if not wait:
        return Call("POST", f"{API_PREFIX}/generate", json=body, headers=headers)
    held = min(MAX_PREFER_WAIT_S, math.ceil(wait_seconds(wait) or MAX_PREFER_WAIT_S))
    headers["Prefer"] = f"wait={max(1, held)}"
    return Call(
        "POST",
        f"{API_PREFIX}/generate",
        json=body,
        headers=headers,
        timeout=timeout(held + READ_TIMEOUT_S),
    )


def batch_call(prompts: list[str], options: GenerationOptions, idempotency_key: str | None) -> Call:
    body = {"prompts": prompts, **_present(options)}
    headers = _idempotency_key(idempotency_key)
    return Call("POST", f"{API_PREFIX}/generate/batch", json=body, headers=headers)


def status_call(job_id: str) -> Call:
    return Call("GET", _job_path("status", job_id))


def cancel_call(job_id: str) -> Call:
    return Call("DELETE", _job_path("cancel", job_id))


def batch_status_call(batch_id: str) -> Call:
    return Call("GET", _job_path("batches", batch_id))


TOKENS_PATH = "/api/v1/tokens"


def usage_call() -> Call:
    return Call("GET", f"{API_PREFIX}/usage")


def models_call() -> Call:
    return Call("GET", f"{API_PREFIX}/models")


class _ModelList(BaseModel):
    models: list[Model]


def models_of(response: httpx.Response) -> list[Model]:
    """`GET /models`'s routes, the default first."""
    return _ModelList.model_validate_json(response.content).models


def session_token_call(
    user: str,
    scopes: Sequence[str] | None,
    ttl_s: int | None,
    origins: Sequence[str] | None,
    limits: Mapping[str, Any] | None,
) -> Call:
    body: dict[str, Any] = {"user": user}
    if scopes is not None:
        body["scopes"] = list(scopes)
    if ttl_s is not None:
        body["ttl_s"] = ttl_s
    if origins is not None:
        body["origins"] = list(origins)
    if limits:
        body["limits"] = dict(limits)
    return Call("POST", TOKENS_PATH, json=body)


def jobs_call(status: str | None, batch_id: str | None, page_size: int, cursor: str | None) -> Call:
    params: dict[str, str | int] = {"limit": page_size}
    for name, value in (("status", status), ("batch_id", batch_id), ("cursor", cursor)):
        if value is not None:
            params[name] = value
    return Call("GET", f"{API_PREFIX}/jobs", params=params)


def events_call(job_id: str, last_event_id: str | None, deadline: "Deadline | None") -> Call:
    headers = {"Accept": "text/event-stream"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    read_s = deadline.pause(STREAM_READ_TIMEOUT_S) if deadline else STREAM_READ_TIMEOUT_S
    path = f"{_job_path('jobs', job_id)}/events"
    # A read ends when the wait does (httpx takes 0 as no time at all, not as no limit).
    return Call("GET", path, headers=headers, timeout=timeout(max(read_s, 0.001)))


def image_call(image: Image | str) -> Call:
    """An image by its model, its `url` or its id."""
    url = image.url if isinstance(image, Image) else image
    if "/" not in url:
        url = f"{API_PREFIX}/images/{quote(url, safe='')}"
    return Call("GET", url)


def _present(values: Mapping[str, object]) -> dict[str, object]:
    return {name: value for name, value in values.items() if value is not None}


def checked(response: httpx.Response) -> httpx.Response:
    if response.is_success:
        return response
    raise error_of(response)


def save_image(content: bytes, path: str | Path | None) -> bytes:
    if path is not None:
        Path(path).write_bytes(content)
    return content


@dataclass(frozen=True)
class RetryPolicy:
    """Which failures are tried again, and after how long.

    Network errors, 429, 502, 503, 504 and `idempotency_key_in_use` are retried: submissions
    carry an Idempotency-Key, so every call is safe to send again. The wait is the answer's
    `Retry-After` when it has one (up to a minute; a longer one is raised at once), else an
    exponential backoff with jitter. Written out rather than taken from a retry library: it is
    these few lines, and the client's only dependencies stay httpx and pydantic.
    """

    max_retries: int = 2
    base_delay_s: float = 0.5
    max_delay_s: float = 8.0
    max_retry_after_s: float = 60.0

    def backoff(self, attempt: int) -> float:
        """The wait before retry number `attempt` (1, 2, ...) when the API named none."""
        ceiling = min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1))
        return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not a secret

    def delay(self, attempt: int, response: httpx.Response) -> float | None:
        """Seconds to wait before retry `attempt` after `response`; None: do not retry."""
        if attempt > self.max_retries or not _retryable(response):
            return None
        named = retry_after_s(response.headers.get("Retry-After"))
        if named is None:
            return self.backoff(attempt)
        # Sooner would be refused again; much later is the caller's call, not a library's.
        return named if named <= self.max_retry_after_s else None

    def after_network_error(self, attempt: int, error: httpx.TransportError) -> float:
        """The wait before retrying after `error`; raises once the retries are spent."""
        if isinstance(error, httpx.UnsupportedProtocol):
            raise InvalidApiUrl(f"not an http(s) URL: {error}") from None
        if attempt > self.max_retries:
            reason = " ".join(str(error).split()) or type(error).__name__
            raise ApiConnectionError(reason) from error
        return self.backoff(attempt)


def _retryable(response: httpx.Response) -> bool:
    if response.status_code in (429, 502, 503, 504):
        return True
    return response.status_code == 409 and b"idempotency_key_in_use" in response.content


def retry_after_s(value: str | None) -> float | None:
    """`Retry-After` in seconds: delta-seconds or an HTTP date."""
    if not value:
        return None
    if value.strip().isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())


class EventStream:
    """Reads a job's `text/event-stream`, across reconnections.

    `feed` takes the stream's lines one by one and returns each event once complete. The id of
    the last event seen is sent back as `Last-Event-ID` on reconnecting, so no event is missed
    or repeated. The API ends a stream after the job's final event (or after an hour). The
    framing is a few lines of the WHATWG rules; httpx-sse would add a dependency for them and
    leave the resumption to us all the same.
    """

    def __init__(self, last_event_id: str | None) -> None:
        self.last_event_id = last_event_id
        self._data: list[str] = []
        self._seen_in_stream = 0
        self._last_terminal = False

    def feed(self, line: str) -> JobEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None  # a comment: keep-alive
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "id" and "\0" not in value:
            self.last_event_id = value
        return None

    def _dispatch(self) -> JobEvent | None:
        if not self._data:
            return None
        event = JobEvent.model_validate_json("\n".join(self._data))
        self._data.clear()
        self._seen_in_stream += 1
        self._last_terminal = event.status is not None and event.status.is_terminal
        return event

    def reconnect(self) -> bool:
        """After a stream ended cleanly: open another? Only when it was cut short, that is
        when it brought events and the last one did not end the job."""
        again = self._seen_in_stream > 0 and not self._last_terminal
        self._seen_in_stream = 0
        self._data.clear()
        return again

    def interrupted(self) -> None:
        """The connection broke mid-stream: drop the partial event."""
        self._data.clear()


class Deadline:
    """How long `wait` may still take; None: as long as the job takes."""

    def __init__(self, job_id: str, timeout_s: float | None) -> None:
        self.job_id = job_id
        self.timeout_s = timeout_s
        self._at = None if timeout_s is None else time.monotonic() + timeout_s

    def remaining(self) -> float | None:
        return None if self._at is None else max(0.0, self._at - time.monotonic())

    def check(self) -> None:
        if self.remaining() == 0.0:
            raise WaitTimeout(f"job {self.job_id} did not settle within {self.timeout_s:g} s")

    def pause(self, seconds: float) -> float:
        remaining = self.remaining()
        return seconds if remaining is None else min(seconds, remaining)
