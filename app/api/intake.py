"""The API's hot path to the ledger: API key lookups and new jobs, grouped into shared
transactions (`app.core.batching`), so a busy API process spends one connection checkout,
one commit and one broker message on many requests instead of on each.
"""

from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from loguru import logger
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.accounts.models import ApiKey
from app.accounts.service import hash_key
from app.api.callers import Caller, key_caller
from app.api.errors import ApiError, Conflict, NotFound
from app.api.schemas import GenerateRequest, JobOut, WebhookReceipt
from app.api.submissions import active_job_counts, check_capacity, params_of
from app.api.views import job_out
from app.core.batching import GroupRunner, in_thread
from app.jobs import service
from app.jobs.engine import JobEngine
from app.jobs.models import Job, JobImage
from app.jobs.webhooks import WebhookOutcome, WebhookRejected, receive_runpod_webhooks
from app.tasks.runpod_tasks import cancel_runpod_job_task, store_images_task, submit_jobs_task

_REJECTIONS: dict[int, type[ApiError]] = {404: NotFound, 409: Conflict}


@dataclass(frozen=True)
class RunPodDelivery:
    token: str
    payload: Any


@dataclass(frozen=True)
class NewJob:
    caller: Caller
    body: GenerateRequest
    timeout_s: float


def enqueue_submissions(job_ids: list[str]) -> None:
    """Hand committed jobs to the workers in one message."""
    if not job_ids:
        return
    try:
        submit_jobs_task.delay(job_ids)
    except Exception as error:  # noqa: BLE001 - any broker failure is recovered the same way
        # A lost message is not a lost job: the tracker submits pending jobs that are due.
        logger.warning("could not enqueue {} jobs now, the tracker will: {}", len(job_ids), error)


class Intake:
    """Per API process: groups concurrent key lookups, and concurrent new jobs."""

    def __init__(self, engine: JobEngine) -> None:
        self._engine = engine
        self._keys: GroupRunner[str, Caller | None] = GroupRunner(in_thread(self._find_callers))
        self._jobs: GroupRunner[NewJob, JobOut] = GroupRunner(in_thread(self._accept))
        self._webhooks: GroupRunner[RunPodDelivery, WebhookReceipt] = GroupRunner(
            in_thread(self._receive_webhooks)
        )

    async def caller(self, plaintext_key: str) -> Caller | None:
        """The caller of a live API key; None for an unknown or revoked one."""
        return await self._keys.run(hash_key(plaintext_key))

    async def accept(self, new_job: NewJob) -> JobOut:
        """Record the job durably, then enqueue its submission; returns the 202 resource."""
        return await self._jobs.run(new_job)

    async def runpod_webhook(self, delivery: RunPodDelivery) -> WebhookReceipt:
        """Apply a RunPod job webhook to the ledger, then enqueue what it calls for."""
        return await self._webhooks.run(delivery)

    def _find_callers(self, key_hashes: list[str]) -> list[Caller | None]:
        settings = self._engine.settings
        with self._engine.db.session() as session:
            keys = session.scalars(select(ApiKey).where(ApiKey.key_hash.in_(set(key_hashes))))
            live = {key.key_hash: key_caller(key, settings) for key in keys if not key.revoked_at}
        return [live.get(key_hash) for key_hash in key_hashes]

    def _accept(self, requests: list[NewJob]) -> list[JobOut | Exception]:
        outcomes: list[Job | Exception] = []
        with self._engine.db.session() as session:
            active = active_job_counts(session, [request.caller for request in requests])
            for request in requests:
                owner, body = request.caller.owner, request.body
                try:
                    check_capacity(request.caller, active, 1)
                except ApiError as error:
                    outcomes.append(error)
                    continue
                if owner in active:
                    active[owner] += 1
                job = service.new_job(
                    owner=owner,
                    prompt=body.prompt,
                    negative_prompt=body.negative_prompt,
                    params=params_of(body),
                    timeout_s=request.timeout_s,
                    webhook_url=str(body.webhook_url) if body.webhook_url else None,
                )
                outcomes.append(job)
            accepted = [job for job in outcomes if isinstance(job, Job)]
            if accepted:
                service.insert_jobs(session, accepted)
        enqueue_submissions([job.id for job in accepted])
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
        intake = state.intake = Intake(state.engine)
    return intake
