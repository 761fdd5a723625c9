"""An API process's intake: the job requests that arrive together are accepted in one
transaction (`app.jobs.admission`, grouped by `app.core.batching`). Once recorded, the jobs wait
in the gateway-held queue, where the workers' dispatchers find them (`app.jobs.dispatch`).

Under load one connection checkout and one commit serve many requests; with one request in
flight nothing waits for a timer.
"""

import asyncio
from collections.abc import Sequence
from functools import partial

from sqlalchemy.exc import IntegrityError

from app.accounts.callers import Caller
from app.core.batching import GroupRunner
from app.core.config import Settings
from app.core.db import Database
from app.core.errors import Conflict, PodrelayError
from app.core.tracing import current_traceparent
from app.jobs.admission import Accepted, IdempotencyKey, JobRequest, accept_requests
from app.jobs.options import GenerationOptions, check_options, route_and_params


def job_request(
    settings: Settings,
    caller: Caller,
    prompts: Sequence[str],
    options: GenerationOptions,
    *,
    batch: bool = False,
    idempotency: IdempotencyKey | None = None,
    celery_task_id: str | None = None,
    batch_id: str | None = None,
) -> JobRequest:
    """A request whose options passed `check_options` (which may resolve a host name), on the
    route it names, with that route's parameters."""
    route, params = route_and_params(settings, options)
    return JobRequest(
        caller=caller,
        prompts=tuple(prompts),
        options=options,
        params=params,
        route=route,
        timeout_s=check_options(settings, options),
        priority=options.priority,
        batch=batch,
        idempotency=idempotency,
        celery_task_id=celery_task_id,
        batch_id=batch_id,
        traceparent=current_traceparent(),
    )


class Intake:
    """Per API process: groups concurrent job requests into shared transactions."""

    def __init__(self, settings: Settings, db: Database) -> None:
        self._settings = settings
        self._db = db
        self._groups: GroupRunner[JobRequest, Accepted] = GroupRunner(self._accept_group)

    async def accept(
        self,
        caller: Caller,
        prompts: Sequence[str],
        options: GenerationOptions,
        *,
        batch: bool = False,
        idempotency: IdempotencyKey | None = None,
    ) -> Accepted:
        """Accept the request (see `app.jobs.admission`), or raise its refusal."""
        make = partial(
            job_request,
            self._settings,
            caller,
            prompts,
            options,
            batch=batch,
            idempotency=idempotency,
        )
        # Checking a webhook URL resolves its host name: not on the event loop.
        request = await asyncio.to_thread(make) if options.webhook_url else make()
        return await self._groups.run(request)

    async def _accept_group(self, requests: list[JobRequest]) -> list[Accepted | Exception]:
        try:
            return list(await self._db.run(accept_requests, self._settings, requests))
        except IntegrityError:
            # Another process remembered one of these Idempotency-Keys meanwhile: alone, each
            # request sees its record now, and is that request's replay.
            return [await self._accept_alone(request) for request in requests]

    async def _accept_alone(self, request: JobRequest) -> Accepted | PodrelayError:
        try:
            return (await self._db.run(accept_requests, self._settings, [request]))[0]
        except IntegrityError:
            return Conflict(
                "a concurrent request with this Idempotency-Key is in progress",
                code="idempotency_key_in_use",
            )
