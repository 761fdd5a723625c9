"""Accepting jobs: the rules every new job passes, for the API and the seed's tasks alike.

A `JobRequest` asks for one job, or a batch of one job per prompt, for a caller. It is
accepted whole or refused with one error (`app.core.errors`):
- the caller's API key is still live: a key revoked a moment ago records nothing;
- an `Idempotency-Key` seen before gives back what it made then (a replay), or a conflict
  when it came with another request;
- the caller's cap on unfinished jobs holds.
The options a schema cannot check come first (`app.jobs.options.check_options`).

`accept_requests` decides and records many requests in one transaction, in their order: the
jobs it lets through count against the caps of those after them, and a request repeating an
earlier one's key is that one's replay.
"""

from collections.abc import Sequence
from dataclasses import dataclass, replace

from sqlalchemy import func, literal, select, union_all
from sqlalchemy.orm import Session

from app.accounts.callers import Caller
from app.accounts.idempotency import Fingerprinted, earlier_requests, remember_all
from app.accounts.service import live_key_ids
from app.core.db import database_now
from app.core.errors import Conflict, PodrelayError, RateLimited, invalid_api_key
from app.jobs import service
from app.jobs.models import Job
from app.jobs.options import GenerationOptions, params_json
from app.jobs.service import NewJob, RecordedJob, new_id
from app.jobs.status import ACTIVE


@dataclass(frozen=True, slots=True)
class IdempotencyKey:
    key: str
    fingerprint: str  # of the request that came with it (`request_fingerprint`)


@dataclass(frozen=True, slots=True)
class JobRequest:
    """One job per prompt, all with the same options; `batch` makes them one batch."""

    caller: Caller
    prompts: tuple[str, ...]
    options: GenerationOptions
    timeout_s: float  # from `check_options`
    batch: bool = False
    idempotency: IdempotencyKey | None = None
    celery_task_id: str | None = None  # the seed's task that asked for the job
    batch_id: str | None = None  # a batch id chosen by the caller (the seed's batch task)


@dataclass(frozen=True, slots=True)
class Accepted:
    """What an accepted request made: its new jobs under `resource_id` (the job's id, or the
    batch's), or, `replayed`, the resource an earlier request with its Idempotency-Key made."""

    resource_id: str
    jobs: tuple[RecordedJob, ...] = ()
    replayed: bool = False


def accept_requests(
    session: Session, requests: Sequence[JobRequest]
) -> list[Accepted | PodrelayError]:
    """Decide each request in order and record the accepted ones' jobs (see the module)."""
    callers = [request.caller for request in requests]
    live = live_key_ids(session, {caller.key_id for caller in callers})
    keys = [(r.caller.owner, r.idempotency.key) for r in requests if r.idempotency is not None]
    earlier = earlier_requests(session, keys)
    active = active_job_counts(session, callers)
    decided: list[tuple[Accepted, list[NewJob]] | PodrelayError] = []
    for request in requests:
        try:
            decided.append(_decide(request, live, earlier, active))
        except PodrelayError as refusal:
            decided.append(refusal)
    new_jobs = [job for d in decided if not isinstance(d, PodrelayError) for job in d[1]]
    _record_batches(session, new_jobs)
    recorded = {job.job.id: job for job in service.record_jobs(session, new_jobs)}
    remember_all(session, [fresh for fresh in earlier.values() if fresh.new])
    return [
        d
        if isinstance(d, PodrelayError)
        else replace(d[0], jobs=tuple(recorded[j.id] for j in d[1]))
        for d in decided
    ]


def _decide(
    request: JobRequest,
    live: set[str],
    earlier: dict[tuple[str, str], Fingerprinted],
    active: dict[str, int],
) -> tuple[Accepted, list[NewJob]]:
    caller = request.caller
    if caller.key_id is not None and caller.key_id not in live:
        raise invalid_api_key()
    if request.idempotency is not None:
        seen = earlier.get((caller.owner, request.idempotency.key))
        if seen is not None:
            if seen.fingerprint != request.idempotency.fingerprint:
                raise Conflict(
                    "this Idempotency-Key was used with a different request",
                    code="idempotency_key_reused",
                )
            return Accepted(seen.resource_id, replayed=True), []
    check_capacity(caller, active, len(request.prompts))
    if caller.owner in active:
        active[caller.owner] += len(request.prompts)
    jobs = _jobs_of(request)
    resource_id = jobs[0].batch_id if request.batch else jobs[0].id
    assert resource_id is not None
    if request.idempotency is not None:
        earlier[caller.owner, request.idempotency.key] = Fingerprinted(
            owner=caller.owner,
            key=request.idempotency.key,
            fingerprint=request.idempotency.fingerprint,
            resource_type="batch" if request.batch else "generate",
            resource_id=resource_id,
            new=True,
        )
    return Accepted(resource_id), jobs


def _jobs_of(request: JobRequest) -> list[NewJob]:
    options = request.options
    batch_id = (request.batch_id or new_id("batch")) if request.batch else None
    return [
        NewJob(
            owner=request.caller.owner,
            prompt=prompt,
            params=params_json(options),
            timeout_s=request.timeout_s,
            negative_prompt=options.negative_prompt,
            webhook_url=str(options.webhook_url) if options.webhook_url else None,
            batch_id=batch_id,
            batch_index=index if request.batch else None,
            celery_task_id=request.celery_task_id,
        )
        for index, prompt in enumerate(request.prompts)
    ]


def _record_batches(session: Session, jobs: Sequence[NewJob]) -> None:
    """The batches of these jobs, before the jobs that refer to them."""
    firsts = [job for job in jobs if job.batch_index == 0]
    if not firsts:
        return
    now = database_now(session)
    for first in firsts:
        size = sum(1 for job in jobs if job.batch_id == first.batch_id)
        service.create_batch(
            session,
            owner=first.owner,
            size=size,
            batch_id=first.batch_id,
            webhook_url=first.webhook_url,
            created_at=now,
        )


def active_job_counts(session: Session, callers: list[Caller]) -> dict[str, int]:
    """How many unfinished jobs each capped caller's owner has, in one query.

    Each count stops one past the caller's cap, which is all a refusal needs, so its cost is
    bounded by the cap (an index range on owner and status), not by the owner's backlog."""
    caps = {caller.owner: caller.max_concurrent_jobs for caller in callers if caller.capped}
    if not caps:
        return {}
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
    query = counts[0] if len(counts) == 1 else union_all(*counts)
    return dict(session.execute(query).tuples().all())


def check_capacity(caller: Caller, active: dict[str, int], new_jobs: int) -> None:
    """Refuse past the caller's cap on unfinished jobs (from `active_job_counts`)."""
    if caller.capped and active[caller.owner] + new_jobs > caller.max_concurrent_jobs:
        raise RateLimited(
            f"at most {caller.max_concurrent_jobs} unfinished jobs per API key",
            code="too_many_active_jobs",
            retry_after=5,
        )
