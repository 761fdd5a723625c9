"""Async client for RunPod Serverless queue endpoints: `{base_url}/{endpoint_id}/{operation}`.

One `RunPodClient` per process holds one pooled `httpx.AsyncClient`. Reads (status, cancel,
health, ...) are retried on connection errors, timeouts, 429 and 5xx. POST /run is retried only
when RunPod surely never saw it; any other failure after sending raises
`AmbiguousSubmissionError`, because RunPod has no idempotency key and a blind retry can start a
second billed job.
"""

import asyncio
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self

import httpx
from loguru import logger

from app.runpod import _http
from app.runpod.errors import (
    AmbiguousSubmissionError,
    JobTimedOutError,
    NotFoundError,
    RunPodAPIError,
    RunPodConfigError,
    RunPodError,
    ServerError,
)
from app.runpod.models import HealthReport, JobState

RUNPOD_API_BASE = "https://api.runpod.ai/v2"
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=5.0)
DEFAULT_MAX_RETRIES = 4
# RunPod allows 200 concurrent /run calls per endpoint; a pool past a few dozen costs more CPU
# per request (httpcore checks every connection) than it gains in parallelism.
DEFAULT_MAX_CONNECTIONS = 32
# Seconds a kept-alive connection may stay idle; the pool shrinks to what the traffic uses.
IDLE_CONNECTION_S = 2.0
USER_AGENT = "podrelay/0.1"

# Called after every HTTP exchange with (operation, seconds, error or None); for metrics.
AttemptHook = Callable[[str, float, RunPodError | None], None]


class RunPodClient:
    """Talks to one RunPod endpoint. Use as `async with RunPodClient(...) as client:`."""

    def __init__(
        self,
        *,
        api_key: str,
        endpoint_id: str,
        base_url: str = RUNPOD_API_BASE,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        initial_retry_delay: float = _http.INITIAL_RETRY_DELAY,
        max_retry_delay: float = _http.MAX_RETRY_DELAY,
        transport: httpx.AsyncBaseTransport | None = None,
        on_attempt: AttemptHook | None = None,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        """Build a client; raises `RunPodConfigError` when the key or endpoint id is empty.

        `on_attempt` (also settable later) observes each HTTP exchange, retries included.
        `max_connections` bounds the connections kept open to RunPod (and so the requests
        in flight): every one is kept alive, since a new TLS connection per request costs
        far more than the pool's bookkeeping; but one left idle for `IDLE_CONNECTION_S`
        closes, because that bookkeeping checks every idle connection on every request (a
        third of a worker's CPU per /run after a burst had opened them all).
        """
        if not api_key:
            raise RunPodConfigError("RUNPOD_API_KEY is not set")
        if not endpoint_id:
            raise RunPodConfigError("the RunPod endpoint id is empty")
        self.endpoint_id = endpoint_id
        self.max_retries = max_retries
        self.on_attempt = on_attempt
        self._initial_retry_delay = initial_retry_delay
        self._max_retry_delay = max_retry_delay
        self._http = httpx.AsyncClient(
            base_url=f"{base_url.rstrip('/')}/{endpoint_id}/",
            headers={"Authorization": f"Bearer {api_key}", "User-Agent": USER_AGENT},
            timeout=timeout,
            transport=transport,
            limits=httpx.Limits(
                max_connections=max_connections,
                max_keepalive_connections=max_connections,
                keepalive_expiry=IDLE_CONNECTION_S,
            ),
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def run(
        self,
        job_input: dict[str, Any],
        *,
        webhook: str | None = None,
        policy: dict[str, Any] | None = None,
        s3_config: dict[str, Any] | None = None,
    ) -> JobState:
        """Queue a job with POST /run and return its first state (usually IN_QUEUE).

        Raises:
            AmbiguousSubmissionError: the request was sent but no clear answer came back.
            RateLimitError, ServerError, RunPodConnectionError: retries were exhausted before
                RunPod accepted the request.
            AuthenticationError, RequestRejectedError, NotFoundError: RunPod refused it.
        """
        envelope = _envelope(job_input, webhook=webhook, policy=policy, s3_config=s3_config)
        body = await self._request("POST", "run", json=envelope, idempotent=False)
        return JobState.from_payload(body)

    async def run_sync(
        self,
        job_input: dict[str, Any],
        *,
        wait_ms: int | None = None,
        webhook: str | None = None,
        policy: dict[str, Any] | None = None,
    ) -> JobState:
        """Run a job with POST /runsync, waiting up to `wait_ms` (RunPod: 1000-300000, default
        90000) for it to finish. A non-terminal state means: keep polling `status()` with its id.

        Raises the same errors as `run()`.
        """
        envelope = _envelope(job_input, webhook=webhook, policy=policy, s3_config=None)
        params = {"wait": str(wait_ms)} if wait_ms is not None else None
        http_timeout = _sync_timeout(self._http.timeout, wait_ms)
        body = await self._request(
            "POST", "runsync", json=envelope, params=params, idempotent=False, timeout=http_timeout
        )
        return JobState.from_payload(body)

    async def status(self, job_id: str, *, wait_ms: int | None = None) -> JobState:
        """Read a job's state with GET /status/{id}, or long-poll /status-sync when `wait_ms`.

        Raises:
            NotFoundError: RunPod does not know the job, or its results expired.
        """
        if wait_ms is None:
            body = await self._request("GET", f"status/{job_id}")
        else:
            body = await self._request(
                "GET",
                f"status-sync/{job_id}",
                params={"wait": str(wait_ms)},
                timeout=_sync_timeout(self._http.timeout, wait_ms),
            )
        return JobState.from_payload(body)

    async def cancel(self, job_id: str) -> JobState:
        """Cancel a queued or running job with POST /cancel/{id}; a finished job is unchanged."""
        return JobState.from_payload(await self._request("POST", f"cancel/{job_id}"))

    async def retry(self, job_id: str) -> JobState:
        """Requeue a FAILED or TIMED_OUT job under the same id with POST /retry/{id}."""
        return JobState.from_payload(await self._request("POST", f"retry/{job_id}"))

    async def purge_queue(self) -> int:
        """Remove every queued (not running) job of the endpoint; returns how many went."""
        body = await self._request("POST", "purge-queue")
        removed = body.get("removed", 0) if isinstance(body, dict) else 0
        return int(removed) if isinstance(removed, int | float) else 0

    async def health(self) -> HealthReport:
        """Read the endpoint's job and worker counts with GET /health."""
        body = await self._request("GET", "health")
        return HealthReport.from_payload(body if isinstance(body, dict) else {})

    async def wait(
        self,
        job_id: str,
        *,
        timeout: float,
        poll_interval: float,
        cancel_on_timeout: bool = True,
    ) -> JobState:
        """Poll until the job is terminal and return its final state.

        The first poll comes after at most 1 s, then the interval grows by half each time up to
        `poll_interval`. Passing failures (rate limits, 5xx, network) do not end the wait.

        Raises:
            JobTimedOutError: `timeout` seconds passed; the job is cancelled at RunPod first
                (unless `cancel_on_timeout` is False) so it stops billing.
            NotFoundError: RunPod no longer knows the job.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        interval = min(1.0, poll_interval)
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            await asyncio.sleep(min(interval, remaining))
            interval = min(poll_interval, interval * 1.5)
            try:
                state = await self.status(job_id)
            except NotFoundError:
                raise
            except RunPodError as error:
                if not error.retryable:
                    raise
                logger.warning("[RUNPOD] status of {} failed, will poll again: {}", job_id, error)
                continue
            if state.is_terminal:
                return state
        if cancel_on_timeout:
            await self._cancel_quietly(job_id)
        raise JobTimedOutError(
            f"RunPod job {job_id} did not finish within {timeout:g} s", job_id=job_id
        )

    async def _cancel_quietly(self, job_id: str) -> None:
        try:
            await self.cancel(job_id)
        except RunPodError as error:
            logger.warning("[RUNPOD] could not cancel {} after its timeout: {}", job_id, error)

    async def _request(
        self,
        method: str,
        operation: str,
        *,
        json: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
        idempotent: bool = True,
        timeout: httpx.Timeout | None = None,
    ) -> Any:
        name = operation.split("/", 1)[0]
        attempt = 0
        while True:
            started = time.perf_counter()
            try:
                outcome = await self._attempt(
                    method, operation, name, json, params, idempotent, timeout
                )
            except RunPodError as raised:
                self._observe(name, started, raised)
                raise
            self._observe(name, started, None if isinstance(outcome, _Body) else outcome)
            if isinstance(outcome, _Body):
                return outcome.value
            error = outcome
            if attempt >= self.max_retries or not error.retryable:
                raise error
            delay = _http.retry_delay(
                attempt, error, initial=self._initial_retry_delay, cap=self._max_retry_delay
            )
            if delay is None:
                raise error
            logger.debug(
                "[RUNPOD] {} failed ({}), retry {} in {:.2f}s", name, error, attempt + 1, delay
            )
            await asyncio.sleep(delay)
            attempt += 1

    def _observe(self, operation: str, started: float, error: RunPodError | None) -> None:
        if self.on_attempt is None:
            return
        try:
            self.on_attempt(operation, time.perf_counter() - started, error)
        except Exception:  # noqa: BLE001 - an observer must never break a RunPod call
            logger.opt(exception=True).debug("[RUNPOD] the attempt hook failed")

    async def _attempt(
        self,
        method: str,
        operation: str,
        name: str,
        json: dict[str, Any] | None,
        params: dict[str, str] | None,
        idempotent: bool,
        timeout: httpx.Timeout | None,
    ) -> "_Body | RunPodError":
        """One HTTP exchange: the decoded body, or the error to retry or raise."""
        try:
            response = await self._http.request(
                method,
                operation,
                json=json,
                params=params,
                timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
            )
        except httpx.HTTPError as exc:
            failure = _http.error_from_transport(exc, name)
            if idempotent or _http.request_surely_unsent(exc):
                return failure
            raise _ambiguous(name, failure) from exc
        if response.is_success:
            return _Body(_http.decode_body(response))
        body = _http.decode_body(response)
        if response.status_code == 400 and _http.is_job_object(body):
            return _Body(body)
        error: RunPodAPIError = _http.error_from_response(response, name)
        if not idempotent and isinstance(error, ServerError):
            raise _ambiguous(name, error)
        return error


class _Body:
    """A successful answer's decoded body, kept apart from errors in `_attempt`'s result."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


def _ambiguous(operation: str, cause: RunPodError) -> AmbiguousSubmissionError:
    return AmbiguousSubmissionError(
        f"RunPod {operation} failed after the request was sent, so the job may exist at RunPod "
        f"({cause.message}); check before submitting again",
        cause=cause,
    )


def _envelope(
    job_input: dict[str, Any],
    *,
    webhook: str | None,
    policy: dict[str, Any] | None,
    s3_config: dict[str, Any] | None,
) -> dict[str, Any]:
    # Always build the envelope ourselves: runpod-python's "wrap if no input key" guess
    # double-wraps `{"input": {}}`.
    envelope: dict[str, Any] = {"input": job_input}
    if webhook:
        envelope["webhook"] = webhook
    if policy:
        envelope["policy"] = policy
    if s3_config:
        envelope["s3Config"] = s3_config
    return envelope


def _sync_timeout(base: httpx.Timeout, wait_ms: int | None) -> httpx.Timeout:
    # The server holds a sync request open for `wait` (90 s by default), so reading must
    # be allowed to take that long plus a margin.
    wait_s = (wait_ms if wait_ms is not None else 90_000) / 1000
    read = (base.read or 0.0) + wait_s
    return httpx.Timeout(base.connect, read=read, write=base.write, pool=base.pool)


def deadline_policy(timeout_s: float) -> dict[str, int]:
    """RunPod `policy` that makes RunPod itself stop a job we would give up on anyway.

    `executionTimeout` (run time) ends at our deadline and `ttl` (queue + run) shortly after it,
    within RunPod's minimums of 5 s and 10 s, so an abandoned job cannot bill for its default
    10 minutes. The ttl margin lets our own timeout fire first, while the job still answers.
    """
    timeout_ms = int(timeout_s * 1000)
    return {"executionTimeout": max(5_000, timeout_ms), "ttl": max(10_000, timeout_ms + 30_000)}
