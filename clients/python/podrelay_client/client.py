"""`Podrelay`: the synchronous client."""

import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self, Unpack

import httpx

from podrelay_client import _core
from podrelay_client._core import Call, Deadline, EventStream, RetryPolicy
from podrelay_client.models import (
    Batch,
    GenerationOptions,
    Image,
    Job,
    JobEvent,
    JobPage,
    JobStatus,
    Model,
    SessionToken,
    Usage,
)


class Podrelay:
    """A client of one Podrelay API. Use it as a context manager, or `close()` it.

    `generate`'s options are those of `POST /generate` (`width`, `height`, `seed`, `timeout`,
    `webhook_url`, ...). Failures raise `podrelay_client.errors` exceptions; network errors,
    429 and 503 are retried `max_retries` times, after the `Retry-After` the API names.
    """

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        api_key: str | None = None,
        *,
        max_retries: int = 2,
        http: httpx.Client | None = None,
    ) -> None:
        self._http = http or httpx.Client(**_core.client_options(base_url, api_key))
        self._retry = RetryPolicy(max_retries=max_retries)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    @property
    def base_url(self) -> str:
        return str(self._http.base_url).rstrip("/")

    def generate(
        self,
        prompt: str,
        *,
        wait: bool | float = False,
        idempotency_key: str | None = None,
        **options: Unpack[GenerationOptions],
    ) -> Job:
        """Start a generation. With `wait` (True, or at most that many seconds), return once
        the job has ended and its images are stored; `WaitTimeout` if it takes longer."""
        call = _core.generate_call(prompt, options, idempotency_key, wait)
        job = Job.model_validate_json(self._send(call).content)
        if not wait or job.settled:
            return job
        return self.wait(job.id, timeout=_core.wait_seconds(wait))

    def batch(
        self,
        prompts: list[str],
        *,
        idempotency_key: str | None = None,
        **options: Unpack[GenerationOptions],
    ) -> Batch:
        """Start up to 10 generations as one batch, with the same options."""
        call = _core.batch_call(prompts, options, idempotency_key)
        return Batch.model_validate_json(self._send(call).content)

    def status(self, job_id: str) -> Job:
        return Job.model_validate_json(self._send(_core.status_call(job_id)).content)

    def cancel(self, job_id: str) -> Job:
        """Cancel a job, at RunPod too; `ConflictError` (`job_finished`) once it has ended."""
        return Job.model_validate_json(self._send(_core.cancel_call(job_id)).content)

    def batch_status(self, batch_id: str) -> Batch:
        return Batch.model_validate_json(self._send(_core.batch_status_call(batch_id)).content)

    def usage(self) -> Usage:
        return Usage.model_validate_json(self._send(_core.usage_call()).content)

    def models(self) -> list[Model]:
        """The models (routes) a job may name, the default first, with their endpoints' health."""
        return _core.models_of(self._send(_core.models_call()))

    def session_token(
        self,
        user: str,
        *,
        scopes: Sequence[str] | None = None,
        ttl_s: int | None = None,
        origins: Sequence[str] | None = None,
        limits: Mapping[str, Any] | None = None,
    ) -> SessionToken:
        """A session token for one end user of your app, minted with this client's server key:
        their browser uses it as its API key and sees only that user's jobs."""
        call = _core.session_token_call(user, scopes, ttl_s, origins, limits)
        return SessionToken.model_validate_json((self._send(call)).content)

    def jobs(
        self,
        *,
        status: JobStatus | str | None = None,
        batch_id: str | None = None,
        page_size: int = 20,
    ) -> Iterator[Job]:
        """The caller's jobs, newest first, fetched a page at a time."""
        cursor: str | None = None
        while True:
            call = _core.jobs_call(status, batch_id, page_size, cursor)
            page = JobPage.model_validate_json(self._send(call).content)
            yield from page.items
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def events(self, job_id: str, *, last_event_id: str | None = None) -> Iterator[JobEvent]:
        """The job's events as they happen, until it ends; reconnects with `Last-Event-ID`
        when the connection breaks, so none is missed or repeated."""
        return self._follow(job_id, EventStream(last_event_id), None)

    def wait(self, job_id: str, *, timeout: float | None = None) -> Job:
        """The job once it has ended and its images are stored (`Job.settled`)."""
        deadline = Deadline(job_id, timeout)
        job = self.status(job_id)
        if not job.status.is_terminal:
            for _ in self._follow(job_id, EventStream(None), deadline):
                pass
            job = self.status(job_id)
        while not job.settled:
            deadline.check()
            time.sleep(deadline.pause(_core.SETTLE_POLL_S))
            job = self.status(job_id)
        return job

    def download(self, image: Image | str, path: str | Path | None = None) -> bytes:
        """An image's bytes (by model, URL or id), also written to `path` when given."""
        return _core.save_image(self._send(_core.image_call(image)).content, path)

    def _send(self, call: Call) -> httpx.Response:
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._http.request(
                    call.method,
                    call.path,
                    json=call.json,
                    params=call.params,
                    headers=call.headers,
                    timeout=call.timeout,
                    follow_redirects=True,
                )
            except httpx.TransportError as error:
                time.sleep(self._retry.after_network_error(attempt, error))
                continue
            pause = self._retry.delay(attempt, response)
            if pause is None:
                return _core.checked(response)
            time.sleep(pause)

    def _follow(
        self, job_id: str, stream: EventStream, deadline: Deadline | None
    ) -> Iterator[JobEvent]:
        attempt = 0
        while True:
            call = _core.events_call(job_id, stream.last_event_id, deadline)
            try:
                with self._http.stream(
                    call.method, call.path, headers=call.headers, timeout=call.timeout
                ) as response:
                    if not response.is_success:
                        response.read()
                        _core.checked(response)
                    for line in response.iter_lines():
                        event = stream.feed(line)
                        if event is not None:
                            attempt = 0
                            yield event
                if not stream.reconnect():
                    return
            except httpx.TransportError as error:
                if deadline is not None:
                    deadline.check()
                stream.interrupted()
                attempt += 1
                time.sleep(self._retry.after_network_error(attempt, error))
