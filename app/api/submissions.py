"""Accepting generation requests: limits, idempotency and the ledger rows, in one transaction.

These run in a worker thread (they use the synchronous session); the caller enqueues the
submission only after they return, that is after the commit.
"""

from typing import Any

from sqlalchemy import CompoundSelect, Select, func, literal, select, union_all
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.accounts.idempotency import (
    IdempotencyConflict,
    remember,
    replayed_resource,
    request_fingerprint,
)
from app.api.callers import Caller
from app.api.errors import ApiError, Conflict, RateLimited, Unprocessable
from app.api.schemas import BatchRequest, GenerateRequest, GenerationOptions
from app.core.config import Settings
from app.jobs import service
from app.jobs.engine import JobEngine
from app.jobs.models import Job
from app.jobs.status import ACTIVE
from app.notify.urls import UnsafeWebhookUrl, check_webhook_url
from app.services.generation_defaults import GenerationParams

_PARAM_FIELDS = set(GenerationParams.model_fields)


def create_generation(
    engine: JobEngine, caller: Caller, body: GenerateRequest, idempotency_key: str | None
) -> tuple[str, bool]:
    """The job for this request and whether it is a replay of an earlier one."""
    return _idempotent(engine, caller, "generate", body, idempotency_key, _new_job)


def create_batch(
    engine: JobEngine, caller: Caller, body: BatchRequest, idempotency_key: str | None
) -> tuple[str, bool]:
    return _idempotent(engine, caller, "batch", body, idempotency_key, _new_batch)


def _idempotent(
    engine: JobEngine,
    caller: Caller,
    route: str,
    body: GenerateRequest | BatchRequest,
    key: str | None,
    create: Any,
) -> tuple[str, bool]:
    fingerprint = request_fingerprint(route, body.model_dump(mode="json"))
    for _ in range(2):  # a concurrent twin may win the unique key; then read its result
        try:
            with engine.db.session() as session:
                if key is not None:
                    existing = replayed_resource(
                        session, owner=caller.owner, key=key, fingerprint=fingerprint
                    )
                    if existing is not None:
                        return existing, True
                resource_id: str = create(session, engine, caller, body)
                if key is not None:
                    remember(
                        session,
                        owner=caller.owner,
                        key=key,
                        fingerprint=fingerprint,
                        resource_type=route,
                        resource_id=resource_id,
                    )
                return resource_id, False
        except IdempotencyConflict as error:
            raise Unprocessable(str(error), code="idempotency_key_reused") from None
        except IntegrityError:
            continue
    raise Conflict(
        "a concurrent request with this Idempotency-Key is in progress",
        code="idempotency_key_in_use",
    )


def check_options(settings: Settings, body: GenerationOptions) -> float:
    """Validate what the schema cannot; returns the job timeout to use."""
    timeout = body.timeout if body.timeout is not None else settings.runpod_job_timeout
    if timeout > settings.job_max_timeout:
        raise ApiError(
            f"timeout must be at most {settings.job_max_timeout:g} s", code="timeout_too_long"
        )
    if body.webhook_url is not None:
        try:
            check_webhook_url(
                str(body.webhook_url), allow_private=settings.private_webhook_urls_allowed
            )
        except UnsafeWebhookUrl as error:
            raise ApiError(str(error), code="webhook_url_refused") from None
    return timeout


def active_jobs_query(callers: list[Caller]) -> Select[str, int] | CompoundSelect[str, int] | None:
    """(owner, unfinished jobs) of each capped caller's owner, in one query; None if none is.

    Each count stops one past the caller's cap, which is all a refusal needs, so its cost is
    bounded by the cap (an index range on owner and status), not by the owner's backlog."""
    caps = {caller.owner: caller.max_concurrent_jobs for caller in callers if caller.capped}
    if not caps:
        return None
    active = [status.value for status in ACTIVE]
    counts = [
        select(literal(owner).label("owner"), func.count().label("active")).select_from(
            select(Job.id)
            .where(Job.owner == owner, Job.status.in_(active))
            .limit(cap + 1)
            .subquery()
        )
        for owner, cap in caps.items()
    ]
    return counts[0] if len(counts) == 1 else union_all(*counts)


def active_job_counts(session: Session, callers: list[Caller]) -> dict[str, int]:
    """How many unfinished jobs each capped caller's owner has (see `active_jobs_query`)."""
    query = active_jobs_query(callers)
    return {} if query is None else dict(session.execute(query).tuples().all())


def check_capacity(caller: Caller, active: dict[str, int], new_jobs: int) -> None:
    """Refuse past the caller's cap on unfinished jobs (from `active_job_counts`)."""
    if caller.capped and active[caller.owner] + new_jobs > caller.max_concurrent_jobs:
        raise RateLimited(
            f"at most {caller.max_concurrent_jobs} unfinished jobs per API key",
            code="too_many_active_jobs",
            retry_after=5,
        )


def capacity_refusals(callers: list[Caller], active: dict[str, int]) -> list[ApiError | None]:
    """For one new job per caller, in order: its refusal past the caller's cap, or None. The
    jobs let through count in `active` for those after them."""
    refusals: list[ApiError | None] = []
    for caller in callers:
        try:
            check_capacity(caller, active, 1)
        except ApiError as error:
            refusals.append(error)
            continue
        if caller.owner in active:
            active[caller.owner] += 1
        refusals.append(None)
    return refusals


def _check_request(
    session: Session, engine: JobEngine, caller: Caller, body: GenerationOptions, new_jobs: int
) -> float:
    timeout = check_options(engine.settings, body)
    check_capacity(caller, active_job_counts(session, [caller]), new_jobs)
    return timeout


def params_of(body: GenerationOptions) -> GenerationParams:
    return GenerationParams.model_validate(params_json(body))


def params_json(body: GenerationOptions) -> dict[str, Any]:
    """`params_of(body)` as JSON values; the options are params already (a subclass)."""
    return body.model_dump(mode="json", include=_PARAM_FIELDS)


def _new_job(session: Session, engine: JobEngine, caller: Caller, body: GenerateRequest) -> str:
    timeout = _check_request(session, engine, caller, body, 1)
    job = service.new_job(
        owner=caller.owner,
        prompt=body.prompt,
        negative_prompt=body.negative_prompt,
        params=params_of(body),
        timeout_s=timeout,
        webhook_url=str(body.webhook_url) if body.webhook_url else None,
    )
    return service.add_job(session, job).id


def _new_batch(session: Session, engine: JobEngine, caller: Caller, body: BatchRequest) -> str:
    timeout = _check_request(session, engine, caller, body, len(body.prompts))
    batch = service.create_batch(session, owner=caller.owner, size=len(body.prompts))
    if body.webhook_url is not None:
        batch.webhook_url = str(body.webhook_url)
    for index, prompt in enumerate(body.prompts):
        job = service.new_job(
            owner=caller.owner,
            prompt=prompt,
            negative_prompt=body.negative_prompt,
            params=params_of(body),
            timeout_s=timeout,
            batch=batch,
            batch_index=index,
            webhook_url=batch.webhook_url,
        )
        service.add_job(session, job)
    return batch.id
