"""Accepting jobs: the rules every new job passes, for the API and the seed's tasks alike.

A `JobRequest` asks for one job, or a batch of one job per prompt, for a caller. It is
accepted whole or refused with one error (`app.core.errors`):
- the caller's API key is still live: a key revoked a moment ago records nothing;
- an `Idempotency-Key` seen before gives back what it made then (a replay), or 422 when it
  came with another request (as the IETF draft says);
- the caller may ask for the request's priority;
- the caller's cap on unfinished jobs holds;
- the caller's daily and monthly budgets cover the jobs' estimated cost (`app.accounts.budgets`);
- the route's queue can start the jobs before their deadline (`app.scheduler.queue`).
The options a schema cannot check come first (`app.jobs.options.check_options`). The jobs let
through get their place in the queue: their priority and fair tag (`app.scheduler.fair`).

`accept_requests` decides and records many requests in one transaction, in their order: the
jobs it lets through count against the caps of those after them, and a request repeating an
earlier one's key is that one's replay.
"""

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import func, literal, select, union_all
from sqlalchemy.orm import Session

from app.accounts.budgets import BudgetCheck
from app.accounts.callers import Caller
from app.accounts.idempotency import Fingerprinted, earlier_requests, remember_all
from app.accounts.service import live_key_ids
from app.core.config import Settings
from app.core.db import database_now
from app.core.errors import (
    Forbidden,
    PodrelayError,
    RateLimited,
    Unprocessable,
    invalid_api_key,
)
from app.jobs import service
from app.jobs.models import Job
from app.jobs.options import GenerationOptions
from app.jobs.service import NewJob, RecordedJob, new_id
from app.jobs.status import ACTIVE
from app.scheduler.fair import Priority
from app.scheduler.queue import Placement, QueueFull, admission_refusals, reserve_tags
from app.scheduler.routes import DEFAULT_ROUTE

# Under QUEUE_ORDER=fifo every job is this one owner's, so tags follow arrival.
FIFO_OWNER = "*"


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
    params: dict[str, Any]  # the generation parameters on its route (`route_and_params`)
    timeout_s: float  # from `check_options`
    batch: bool = False
    idempotency: IdempotencyKey | None = None
    celery_task_id: str | None = None  # the seed's task that asked for the job
    batch_id: str | None = None  # a batch id chosen by the caller (the seed's batch task)
    priority: Priority = Priority.NORMAL
    route: str = DEFAULT_ROUTE
    traceparent: str | None = None  # the request's trace, kept on its jobs (`app.core.tracing`)


@dataclass(frozen=True, slots=True)
class Accepted:
    """What an accepted request made: its new jobs under `resource_id` (the job's id, or the
    batch's), or, `replayed`, the resource an earlier request with its Idempotency-Key made."""

    resource_id: str
    jobs: tuple[RecordedJob, ...] = ()
    replayed: bool = False


@dataclass(slots=True)
class _Decision:
    request: JobRequest
    outcome: Accepted | PodrelayError
    jobs: list[NewJob]


def accept_requests(
    session: Session, settings: Settings, requests: Sequence[JobRequest]
) -> list[Accepted | PodrelayError]:
    """Decide each request in order and record the accepted ones' jobs (see the module)."""
    callers = [request.caller for request in requests]
    live = live_key_ids(session, {caller.key_id for caller in callers})
    keys = [(r.caller.owner, r.idempotency.key) for r in requests if r.idempotency is not None]
    earlier: dict[tuple[str, str], Fingerprinted | _Decision] = dict(
        earlier_requests(session, keys)
    )
    active = active_job_counts(session, callers)
    budgets = BudgetCheck(session, settings, callers)
    decisions = [_decide(request, live, earlier, active, budgets) for request in requests]
    _place(session, [d for d in decisions if d.jobs], fifo=settings.queue_order == "fifo")
    for decision in decisions:
        if isinstance(decision.outcome, QueueFull):
            request = decision.request
            budgets.refund(request.caller, request.route, len(request.prompts))
    budgets.notify()
    new_jobs = [job for decision in decisions for job in decision.jobs]
    _record_batches(session, new_jobs)
    recorded = {job.job.id: job for job in service.record_jobs(session, new_jobs)}
    remember_all(session, [_made(d) for d in decisions if d.jobs and d.request.idempotency])
    return [
        replace(d.outcome, jobs=tuple(recorded[job.id] for job in d.jobs))
        if isinstance(d.outcome, Accepted)
        else d.outcome
        for d in decisions
    ]


def _decide(
    request: JobRequest,
    live: set[str],
    earlier: dict[tuple[str, str], Fingerprinted | _Decision],
    active: dict[str, int],
    budgets: BudgetCheck,
) -> _Decision:
    caller = request.caller
    try:
        if caller.key_id is not None and caller.key_id not in live:
            raise invalid_api_key()
        if request.priority.rank < caller.max_priority.rank:
            raise Forbidden(
                f"this key may ask for priority {caller.max_priority.value} at most",
                code="priority_not_allowed",
            )
        if request.idempotency is not None:
            seen = earlier.get((caller.owner, request.idempotency.key))
            if seen is not None:
                return _replay(request, seen)
        check_capacity(caller, active, len(request.prompts))
        budgets.charge(caller, request.route, len(request.prompts))
    except PodrelayError as refusal:
        return _Decision(request, refusal, [])
    if caller.owner in active:
        active[caller.owner] += len(request.prompts)
    jobs = _jobs_of(request)
    decision = _Decision(request, Accepted(jobs[0].batch_id or jobs[0].id), jobs)
    if request.idempotency is not None:
        earlier[caller.owner, request.idempotency.key] = decision
    return decision


def _replay(request: JobRequest, seen: "Fingerprinted | _Decision") -> _Decision:
    """The answer to a request whose Idempotency-Key was seen before: in an earlier
    transaction (a record), or earlier in this one (a decision, refused or not yet)."""
    assert request.idempotency is not None
    if isinstance(seen, _Decision):
        assert seen.request.idempotency is not None
        fingerprint = seen.request.idempotency.fingerprint
        outcome = seen.outcome
    else:
        fingerprint, outcome = seen.fingerprint, Accepted(seen.resource_id)
    if fingerprint != request.idempotency.fingerprint:
        return _Decision(
            request,
            Unprocessable(
                "this Idempotency-Key was used with a different request",
                code="idempotency_key_reused",
            ),
            [],
        )
    if isinstance(outcome, PodrelayError):
        return _Decision(request, outcome, [])
    return _Decision(request, Accepted(outcome.resource_id, replayed=True), [])


def _place(session: Session, decisions: Sequence[_Decision], *, fifo: bool) -> None:
    """Refuse the requests the queue cannot start in time (`app.scheduler.queue`), and give
    the others' jobs their place: priority and fair tag. First come, first served is the same
    with every owner as one."""
    placements = [_placement(decision, fifo=fifo) for decision in decisions]
    for decision, refusal in zip(decisions, admission_refusals(session, placements), strict=True):
        if refusal is not None:
            decision.outcome, decision.jobs = refusal, []
    kept = [(d, p) for d, p in zip(decisions, placements, strict=True) if d.jobs]
    firsts = reserve_tags(session, [placement for _, placement in kept])
    for (decision, placement), first in zip(kept, firsts, strict=True):
        step = 1.0 / placement.weight
        decision.jobs = [
            replace(job, fair_tag=first + index * step) for index, job in enumerate(decision.jobs)
        ]


def _placement(decision: _Decision, *, fifo: bool) -> Placement:
    request = decision.request
    return Placement(
        queue=(request.route, request.priority.rank),
        owner=FIFO_OWNER if fifo else request.caller.owner,
        weight=1.0 if fifo else request.caller.weight,
        count=len(decision.jobs),
        timeout_s=request.timeout_s,
    )


def _made(decision: _Decision) -> Fingerprinted:
    """The idempotency record of an accepted request."""
    request = decision.request
    assert request.idempotency is not None
    assert isinstance(decision.outcome, Accepted)
    return Fingerprinted(
        owner=request.caller.owner,
        key=request.idempotency.key,
        fingerprint=request.idempotency.fingerprint,
        resource_type="batch" if request.batch else "generate",
        resource_id=decision.outcome.resource_id,
    )


def _jobs_of(request: JobRequest) -> list[NewJob]:
    options = request.options
    batch_id = (request.batch_id or new_id("batch")) if request.batch else None
    return [
        NewJob(
            owner=request.caller.owner,
            prompt=prompt,
            params=request.params,
            timeout_s=request.timeout_s,
            negative_prompt=options.negative_prompt,
            webhook_url=str(options.webhook_url) if options.webhook_url else None,
            batch_id=batch_id,
            batch_index=index if request.batch else None,
            celery_task_id=request.celery_task_id,
            route=request.route,
            priority=request.priority.rank,
            traceparent=request.traceparent,
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
