"""The API's hot path to the ledger: API key lookups and new jobs, grouped into shared
transactions (`app.core.batching`), so a busy API process spends one connection checkout,
one commit and one broker message on many requests instead of on each.

On PostgreSQL a group of new jobs is one statement from the event loop (`app.jobs.bulk_record`);
on SQLite it is a transaction in a worker thread.
"""

import time
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.accounts.models import ApiKey
from app.accounts.service import hash_key, live_key_ids
from app.api.callers import Caller, key_caller
from app.api.errors import ApiError, Conflict, NotFound, Unauthorized
from app.api.ratelimit import Hit, RateLimiter, over_limit, rate_limiter_of
from app.api.schemas import GenerateRequest, JobOut, WebhookReceipt
from app.api.submission_queue import SubmissionQueue, ledger_engine
from app.api.submissions import (
    active_job_counts,
    active_jobs_query,
    capacity_refusals,
    params_json,
    params_of,
)
from app.api.views import job_out, recorded_job_out
from app.core.batching import GroupCall, GroupRunner, in_thread
from app.jobs import service
from app.jobs.bulk_record import NewJobRecord, record_new_jobs
from app.jobs.engine import JobEngine
from app.jobs.models import Job, JobImage
from app.jobs.webhooks import WebhookOutcome, WebhookRejected, receive_runpod_webhooks
from app.tasks.runpod_tasks import cancel_runpod_job_task, store_images_task

_REJECTIONS: dict[int, type[ApiError]] = {404: NotFound, 409: Conflict}
# How long a key looked up for a submission is trusted for its limits (see `recent_caller`).
KNOWN_KEY_S = 30.0


@dataclass(frozen=True)
class RunPodDelivery:
    token: str
    payload: Any


@dataclass(frozen=True)
class NewJob:
    caller: Caller
    body: GenerateRequest
    timeout_s: float


@dataclass(frozen=True)
class CountedRequest:
    """A request to count against `caller`'s rate limit under `rate_key`, and the job it
    asks for, or the refusal its options got (answered only if the count allows it)."""

    caller: Caller
    rate_key: str
    job: NewJob | ApiError


@dataclass(frozen=True)
class Counted:
    outcome: JobOut | Exception
    hit: Hit


class Intake:
    """Per API process: groups concurrent key lookups, and concurrent new jobs."""

    def __init__(self, engine: JobEngine, limiter: RateLimiter) -> None:
        self._engine = engine
        self._limiter = limiter
        self._keys: GroupRunner[str, Caller | None] = GroupRunner(in_thread(self._find_callers))
        self._known_keys: dict[str, tuple[Caller, float]] = {}
        # PostgreSQL: new jobs are recorded from the event loop (`app.jobs.bulk_record`).
        self._ledger = ledger_engine(engine.db.url)
        self._accept_group: GroupCall[NewJob, JobOut] = (
            in_thread(self._accept) if self._ledger is None else self._record
        )
        self._jobs: GroupRunner[NewJob, JobOut] = GroupRunner(self._accept_group)
        self._counted: GroupRunner[CountedRequest, Counted] = GroupRunner(self._count_and_accept)
        self._submissions = SubmissionQueue()
        self._webhooks: GroupRunner[RunPodDelivery, WebhookReceipt] = GroupRunner(
            in_thread(self._receive_webhooks)
        )

    async def caller(self, plaintext_key: str) -> Caller | None:
        """The caller of a live API key; None for an unknown or revoked one."""
        return await self._keys.run(hash_key(plaintext_key))

    async def recent_caller(self, plaintext_key: str) -> Caller | None:
        """`caller` as it was up to `KNOWN_KEY_S` ago, for a request that only goes on to
        `accept`: that records no job for a key revoked meanwhile (limits may lag that long)."""
        key_hash = hash_key(plaintext_key)
        known = self._known_keys.get(key_hash)
        if known is not None and known[1] > time.monotonic():
            return known[0]
        caller = await self._keys.run(key_hash)
        if caller is None:
            self._known_keys.pop(key_hash, None)
        else:
            self._known_keys[key_hash] = (caller, time.monotonic() + KNOWN_KEY_S)
        return caller

    async def accept(self, new_job: NewJob) -> JobOut:
        """Record the job durably, then queue its submission; returns the 202 resource.
        A caller whose API key was revoked meanwhile gets `invalid_api_key` (401)."""
        view = await self._jobs.run(new_job)
        self._submissions.put([view.id])
        return view

    async def accept_counted(self, request: CountedRequest) -> Counted:
        """Count the request against its caller's rate limit, then `accept` its job unless
        the count is over the limit (`RateLimited`) or its options were refused, all in one
        group: for a request not counted yet, one wait instead of two."""
        counted = await self._counted.run(request)
        if isinstance(counted.outcome, JobOut):
            self._submissions.put([counted.outcome.id])
        return counted

    async def _count_and_accept(self, requests: list[CountedRequest]) -> list[Counted]:
        hits = await self._limiter.hits(
            [(request.rate_key, request.caller.requests_per_minute) for request in requests]
        )
        refusals = [
            over_limit(hit) or (request.job if isinstance(request.job, ApiError) else None)
            for request, hit in zip(requests, hits, strict=True)
        ]
        jobs = [
            request.job
            for request, refusal in zip(requests, refusals, strict=True)
            if refusal is None and isinstance(request.job, NewJob)
        ]
        accepted = iter(await self._accept_group(jobs) if jobs else ())
        return [
            Counted(outcome=refusal or next(accepted), hit=hit)
            for refusal, hit in zip(refusals, hits, strict=True)
        ]

    async def runpod_webhook(self, delivery: RunPodDelivery) -> WebhookReceipt:
        """Apply a RunPod job webhook to the ledger, then enqueue what it calls for."""
        return await self._webhooks.run(delivery)

    async def aclose(self) -> None:
        """Send the submissions still queued, and close the ledger connections."""
        await self._submissions.aclose()
        if self._ledger is not None:
            await self._ledger.dispose()

    async def _record(self, requests: list[NewJob]) -> list[JobOut | Exception]:
        assert self._ledger is not None
        callers = [request.caller for request in requests]
        records = [_record_of(request) for request in requests]
        async with self._ledger.connect() as connection:
            query = active_jobs_query(callers)
            active = {} if query is None else dict((await connection.execute(query)).tuples().all())
            refusals = capacity_refusals(callers, active)
            accepted = [
                record for record, refusal in zip(records, refusals, strict=True) if not refusal
            ]
            recorded = await record_new_jobs(connection, accepted) if accepted else {}
        self._forget_keys({record.key_id for record in accepted if record.id not in recorded})
        outcomes: list[JobOut | Exception] = []
        for record, refusal in zip(records, refusals, strict=True):
            if refusal is not None:
                outcomes.append(refusal)
            elif record.id in recorded:
                outcomes.append(recorded_job_out(record, recorded[record.id]))
            else:
                outcomes.append(invalid_api_key())
        return outcomes

    def _forget_keys(self, revoked_key_ids: set[str | None]) -> None:
        if revoked_key_ids:
            for key_hash, (caller, _) in list(self._known_keys.items()):
                if caller.key_id in revoked_key_ids:
                    del self._known_keys[key_hash]

    def _find_callers(self, key_hashes: list[str]) -> list[Caller | None]:
        settings = self._engine.settings
        with self._engine.db.session() as session:
            keys = session.scalars(select(ApiKey).where(ApiKey.key_hash.in_(set(key_hashes))))
            live = {key.key_hash: key_caller(key, settings) for key in keys if not key.revoked_at}
        return [live.get(key_hash) for key_hash in key_hashes]

    def _accept(self, requests: list[NewJob]) -> list[JobOut | Exception]:
        callers = [request.caller for request in requests]
        with self._engine.db.session() as session:
            refusals = capacity_refusals(callers, active_job_counts(session, callers))
            live = live_key_ids(session, {caller.key_id for caller in callers})
            outcomes: list[Job | Exception] = []
            for request, refusal in zip(requests, refusals, strict=True):
                if refusal is not None:
                    outcomes.append(refusal)
                elif request.caller.key_id is not None and request.caller.key_id not in live:
                    outcomes.append(invalid_api_key())
                else:
                    outcomes.append(_new_job(request))
            accepted = [job for job in outcomes if isinstance(job, Job)]
            if accepted:
                service.insert_jobs(session, accepted)
        self._forget_keys(
            {caller.key_id for caller in callers if caller.key_id not in live} - {None}
        )
        price = self._engine.settings.gpu_price_per_second
        return [
            job_out(job, price_per_second=price, fresh=True) if isinstance(job, Job) else job
            for job in outcomes
        ]

    def _receive_webhooks(
        self, deliveries: list[RunPodDelivery]
    ) -> list[WebhookReceipt | Exception]:
        try:
            with self._engine.db.session() as session:
                outcomes = [
                    _as_problem(outcome)
                    for outcome in receive_runpod_webhooks(
                        session,
                        [(delivery.token, delivery.payload) for delivery in deliveries],
                        store=self._engine.store,
                    )
                ]
                image_jobs = _jobs_awaiting_images(session, outcomes)
        except Exception:  # one delivery broke the shared transaction: each on its own
            if len(deliveries) == 1:
                raise
            return [self._receive_alone(delivery) for delivery in deliveries]
        # Enqueued only after the commit above, so the tasks always find what they look for.
        if image_jobs:
            store_images_task.delay(image_jobs)
        for outcome in outcomes:
            if isinstance(outcome, WebhookOutcome):
                for runpod_job_id in outcome.cancel_runpod_jobs:
                    cancel_runpod_job_task.delay(runpod_job_id)
        return [
            WebhookReceipt(received=True, changed=outcome.changed)
            if isinstance(outcome, WebhookOutcome)
            else outcome
            for outcome in outcomes
        ]

    def _receive_alone(self, delivery: RunPodDelivery) -> WebhookReceipt | Exception:
        try:
            receipt = self._receive_webhooks([delivery])[0]
        except Exception as error:  # noqa: BLE001 - handed to this delivery's caller
            return error
        return receipt


def invalid_api_key() -> Unauthorized:
    return Unauthorized("the API key is not valid or was revoked", code="invalid_api_key")


def _new_job(request: NewJob) -> Job:
    body = request.body
    return service.new_job(
        owner=request.caller.owner,
        prompt=body.prompt,
        negative_prompt=body.negative_prompt,
        params=params_of(body),
        timeout_s=request.timeout_s,
        webhook_url=str(body.webhook_url) if body.webhook_url else None,
    )


def _record_of(request: NewJob) -> NewJobRecord:
    body = request.body
    return NewJobRecord(
        id=service.new_id("job"),
        owner=request.caller.owner,
        key_id=request.caller.key_id,
        prompt=body.prompt,
        negative_prompt=body.negative_prompt,
        params=params_json(body),
        timeout_s=request.timeout_s,
        webhook_url=str(body.webhook_url) if body.webhook_url else None,
    )


def _as_problem(outcome: WebhookOutcome | WebhookRejected) -> WebhookOutcome | ApiError:
    if isinstance(outcome, WebhookOutcome):
        return outcome
    rejection = _REJECTIONS.get(outcome.status_code, ApiError)
    return rejection(str(outcome), code="webhook_rejected")


def _jobs_awaiting_images(session: Session, outcomes: list[WebhookOutcome | ApiError]) -> list[str]:
    changed = [o.job_id for o in outcomes if isinstance(o, WebhookOutcome) and o.changed]
    if not changed:
        return []
    query = select(JobImage.job_id).where(JobImage.job_id.in_(changed), JobImage.state == "pending")
    return list(session.scalars(query.distinct()))


def intake_of(application: FastAPI) -> Intake:
    """The application's intake, made on first use from its engine."""
    state = application.state
    intake: Intake | None = getattr(state, "intake", None)
    if intake is None:
        intake = state.intake = Intake(state.engine, rate_limiter_of(application))
    return intake
