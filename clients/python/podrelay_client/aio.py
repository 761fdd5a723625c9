"""`AsyncPodrelay`: the asyncio client, method for method the same as `Podrelay`."""

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
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


class AsyncPodrelay:
    """A client of one Podrelay API for asyncio code; see `Podrelay` for the details."""

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        api_key: str | None = None,
        *,
        max_retries: int = 2,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self._http = http or httpx.AsyncClient(**_core.client_options(base_url, api_key))
        self._retry = RetryPolicy(max_retries=max_retries)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    async def generate(
        self,
        prompt: str,
        *,
        wait: bool | float = False,
        idempotency_key: str | None = None,
        **options: Unpack[GenerationOptions],
    ) -> Job:
        call = _core.generate_call(prompt, options, idempotency_key, wait)
        job = Job.model_validate_json((await self._send(call)).content)
        if not wait or job.settled:
            return job
        return await self.wait(job.id, timeout=_core.wait_seconds(wait))

    async def batch(
        self,
        prompts: list[str],
        *,
        idempotency_key: str | None = None,
        **options: Unpack[GenerationOptions],
    ) -> Batch:
        call = _core.batch_call(prompts, options, idempotency_key)
        return Batch.model_validate_json((await self._send(call)).content)

    async def status(self, job_id: str) -> Job:
        return Job.model_validate_json((await self._send(_core.status_call(job_id))).content)

    async def cancel(self, job_id: str) -> Job:
        return Job.model_validate_json((await self._send(_core.cancel_call(job_id))).content)

    async def batch_status(self, batch_id: str) -> Batch:
        answer = await self._send(_core.batch_status_call(batch_id))
        return Batch.model_validate_json(answer.content)

    async def usage(self) -> Usage:
        return Usage.model_validate_json((await self._send(_core.usage_call())).content)

    async def models(self) -> list[Model]:
        """The models (routes) a job may name, the default first, with their endpoints' health."""
        return _core.models_of(await self._send(_core.models_call()))

    async def session_token(
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
        return SessionToken.model_validate_json((await self._send(call)).content)

    async def jobs(
        self,
        *,
        status: JobStatus | str | None = None,
        batch_id: str | None = None,
        page_size: int = 20,
    ) -> AsyncIterator[Job]:
        cursor: str | None = None
        while True:
            call = _core.jobs_call(status, batch_id, page_size, cursor)
            page = JobPage.model_validate_json((await self._send(call)).content)
            for job in page.items:
                yield job
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def events(self, job_id: str, *, last_event_id: str | None = None) -> AsyncIterator[JobEvent]:
        return self._follow(job_id, EventStream(last_event_id), None)

    async def wait(self, job_id: str, *, timeout: float | None = None) -> Job:
        deadline = Deadline(job_id, timeout)
        job = await self.status(job_id)
        if not job.status.is_terminal:
            async for _ in self._follow(job_id, EventStream(None), deadline):
                pass
            job = await self.status(job_id)
        while not job.settled:
            deadline.check()
            await asyncio.sleep(deadline.pause(_core.SETTLE_POLL_S))
            job = await self.status(job_id)
        return job

    async def download(self, image: Image | str, path: str | Path | None = None) -> bytes:
        answer = await self._send(_core.image_call(image))
        return _core.save_image(answer.content, path)

    async def _send(self, call: Call) -> httpx.Response:
        attempt = 0
        while True:
            attempt += 1
            try:
                response = await self._http.request(
                    call.method,
                    call.path,
                    json=call.json,
                    params=call.params,
                    headers=call.headers,
                    timeout=call.timeout,
                    follow_redirects=True,
                )
            except httpx.TransportError as error:
                await asyncio.sleep(self._retry.after_network_error(attempt, error))
                continue
            pause = self._retry.delay(attempt, response)
            if pause is None:
                return _core.checked(response)
            await asyncio.sleep(pause)

    async def _follow(
        self, job_id: str, stream: EventStream, deadline: Deadline | None
    ) -> AsyncIterator[JobEvent]:
        attempt = 0
        while True:
            call = _core.events_call(job_id, stream.last_event_id, deadline)
            try:
                async with self._http.stream(
                    call.method, call.path, headers=call.headers, timeout=call.timeout
                ) as response:
                    if not response.is_success:
                        await response.aread()
                        _core.checked(response)
                    async for line in response.aiter_lines():
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
                await asyncio.sleep(self._retry.after_network_error(attempt, error))
