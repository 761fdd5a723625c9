"""The API's hot path to the ledger: API key lookups and new jobs, grouped into shared
transactions (`app.core.batching`), so a busy API process spends one connection checkout,
one commit and one broker message on many requests instead of on each.
"""

from dataclasses import dataclass

from fastapi import FastAPI
from loguru import logger
from sqlalchemy import select

from app.accounts.models import ApiKey
from app.accounts.service import hash_key
from app.api.callers import Caller, key_caller
from app.api.errors import ApiError
from app.api.schemas import GenerateRequest, JobOut
from app.api.submissions import active_job_counts, check_capacity, params_of
from app.api.views import job_out
from app.core.batching import GroupRunner
from app.jobs import service
from app.jobs.engine import JobEngine
from app.jobs.models import Job
from app.tasks.runpod_tasks import submit_jobs_task


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
        self._keys: GroupRunner[str, Caller | None] = GroupRunner(self._find_callers)
        self._jobs: GroupRunner[NewJob, JobOut] = GroupRunner(self._accept)

    async def caller(self, plaintext_key: str) -> Caller | None:
        """The caller of a live API key; None for an unknown or revoked one."""
        return await self._keys.run(hash_key(plaintext_key))

    async def accept(self, new_job: NewJob) -> JobOut:
        """Record the job durably, then enqueue its submission; returns the 202 resource."""
        return await self._jobs.run(new_job)

    def _find_callers(self, key_hashes: list[str]) -> list[Caller | None]:
        settings = self._engine.settings
        with self._engine.db.session() as session:
            keys = session.scalars(select(ApiKey).where(ApiKey.key_hash.in_(set(key_hashes))))
            live = {key.key_hash: key_caller(key, settings) for key in keys if not key.revoked_at}
        return [live.get(key_hash) for key_hash in key_hashes]

    def _accept(self, requests: list[NewJob]) -> list[JobOut | Exception]:
        outcomes: list[Job | Exception] = []
        with self._engine.db.session() as session:
            active = active_job_counts(session, {request.caller.owner for request in requests})
            for request in requests:
                owner, body = request.caller.owner, request.body
                try:
                    check_capacity(request.caller, active[owner], 1)
                except ApiError as error:
                    outcomes.append(error)
                    continue
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


def intake_of(application: FastAPI) -> Intake:
    """The application's intake, made on first use from its engine."""
    state = application.state
    intake: Intake | None = getattr(state, "intake", None)
    if intake is None:
        intake = state.intake = Intake(state.engine)
    return intake
