"""Claiming pending jobs for an endpoint and opening their submissions: the first half of a
dispatch, in one transaction (`app.jobs.submit` sends them and records RunPod's answers).

A claim is a lease timed by the database's clock, so two dispatchers (or a dispatcher and a
seed task) never send one job at once; `SKIP LOCKED` lets each take the queue's head without
waiting for the other. An endpoint takes the jobs of its own route, and of the routes that
fall back on it while none of their own endpoints can take work; a job whose last attempt may
be running at one endpoint (an ambiguous answer, or a worker killed before it recorded one) is
pinned there and never moves.
"""

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from itertools import groupby
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from app.core.config import Settings
from app.core.db import database_now
from app.jobs.inputs import runpod_input
from app.jobs.models import Job, JobEvent, Submission
from app.jobs.service import SENDING, add_event, event_row, insert_rows
from app.jobs.status import JobStatus
from app.scheduler.fair import advance_clock
from app.scheduler.routes import Endpoint
from app.services.generation_defaults import GenerationParams

_SUBMISSIONS = Submission.metadata.tables[Submission.__tablename__]
_EVENTS = JobEvent.metadata.tables[JobEvent.__tablename__]


@dataclass(frozen=True, slots=True)
class Prepared:
    """A claimed job with its submission open: what its POST /run sends."""

    job_id: str
    token: str
    job_input: dict[str, Any]
    remaining_s: float
    endpoint_id: str
    traceparent: str | None = None  # the job's trace (`app.core.tracing`)


def prepare(
    session: Session,
    settings: Settings,
    endpoint: Endpoint,
    *,
    job_ids: list[str] | None = None,
    limit: int = 0,
    routes: Sequence[str] = (),
) -> list[Prepared]:
    """Claim pending jobs and open a submission to `endpoint` for each: the given jobs, or the
    next `limit` of the endpoint's route (and of `routes`, which fall back on it) in dispatch
    order: priority, then fair tag. A job already claimed, submitted, pinned to another
    endpoint or past its deadline is left out (the deadline is the tracker's:
    `enforce_deadlines`). A job another route's endpoint takes becomes that route's job."""
    now = database_now(session)
    claimable = [
        Job.status == JobStatus.PENDING.value,
        Job.runpod_job_id.is_(None),
        or_(Job.claimed_until.is_(None), Job.claimed_until < now),
        Job.deadline_at > now,
    ]
    if job_ids is None:
        job_ids = list(
            session.scalars(
                select(Job.id)
                .where(*claimable, Job.route.in_([endpoint.route, *routes]))
                .where(Job.next_poll_at <= now)
                .where(or_(Job.endpoint.is_(None), Job.endpoint == endpoint.id))
                .order_by(Job.priority, Job.fair_tag)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
        )
    if not job_ids:
        return []
    routed_from = dict(
        session.execute(
            select(Job.id, Job.route).where(Job.id.in_(job_ids), Job.route != endpoint.route)
        )
        .tuples()
        .all()
    )
    claimed = session.execute(
        update(Job)
        .where(Job.id.in_(job_ids), *claimable)
        .values(
            claim_token=secrets.token_hex(8),
            claimed_until=now + timedelta(seconds=settings.submit_lease),
            attempts=Job.attempts + 1,
            endpoint=endpoint.id,
            route=endpoint.route,
            updated_at=now,
        )
        .returning(
            Job.id,
            Job.prompt,
            Job.negative_prompt,
            Job.params,
            Job.deadline_at,
            Job.attempts,
            Job.route,
            Job.priority,
            Job.fair_tag,
            Job.traceparent,
        )
        .execution_options(synchronize_session=False)
    ).all()
    if not claimed:
        return []
    close_unanswered(session, [row.id for row in claimed if row.attempts > 1])
    _record_reroutes(session, endpoint, routed_from, [row.id for row in claimed], now)
    route = settings.catalogue.routes[endpoint.route]
    prepared = [
        Prepared(
            job_id=row.id,
            token=secrets.token_urlsafe(24),
            job_input=runpod_input(
                route, row.prompt, row.negative_prompt, GenerationParams.model_validate(row.params)
            ),
            remaining_s=(row.deadline_at - now).total_seconds(),
            endpoint_id=endpoint.id,
            traceparent=row.traceparent,
        )
        for row in claimed
    ]
    insert_rows(
        session,
        _SUBMISSIONS,
        [
            {
                "job_id": item.job_id,
                "token": item.token,
                "outcome": SENDING,
                "endpoint": endpoint.id,
                "created_at": now,
            }
            for item in prepared
        ],
    )
    # Each job leaves the queue it was placed in (its route before a reroute).
    queues = sorted(
        (routed_from.get(row.id, row.route), row.priority, row.fair_tag) for row in claimed
    )
    for queue, rows in groupby(queues, key=lambda item: item[:2]):
        advance_clock(session, queue, max(tag for *_, tag in rows))
    return prepared


def _record_reroutes(
    session: Session, endpoint: Endpoint, routed_from: dict[str, str], claimed: list[str], now: Any
) -> None:
    moved = [job_id for job_id in claimed if job_id in routed_from]
    if moved:
        insert_rows(
            session,
            _EVENTS,
            [
                event_row(
                    job_id,
                    "rerouted",
                    JobStatus.PENDING.value,
                    at=now,
                    message=f"no endpoint of {routed_from[job_id]!r} could take it",
                    data={"from": routed_from[job_id], "to": endpoint.route},
                )
                for job_id in moved
            ],
        )


def close_unanswered(session: Session, job_ids: list[str]) -> None:
    """Attempts still `sending` were cut off (their worker stopped) before RunPod's answer was
    recorded, so RunPod may be running them. With webhooks, the orphan's webhook names it and it
    is cancelled; without, nothing ever will (RunPod lists no jobs), so the job's timeline and
    the submission say so."""
    if not job_ids:
        return
    by_id = {job.id: job for job in session.scalars(select(Job).where(Job.id.in_(job_ids)))}
    query = select(Submission).where(Submission.job_id.in_(by_id), Submission.outcome == SENDING)
    for submission in session.scalars(query):
        submission.outcome = "ambiguous"
        submission.error = "the worker stopped before RunPod's answer was recorded"
        add_event(
            session,
            by_id[submission.job_id],
            "submission_in_doubt",
            message="an earlier attempt may be running at RunPod; its result is not kept",
            data={"submission_id": submission.id},
        )
