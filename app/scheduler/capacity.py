"""What an endpoint can take: its in-flight cap from RunPod's /health, and how fast it starts jobs.

RunPod's queue should hold only what its workers will soon take; the rest waits in Podrelay,
where it can be reordered, moved or cancelled at no cost. So an endpoint holds at most
`max_in_flight` jobs queued or running at RunPod: MAX_IN_FLIGHT when set, otherwise
IN_FLIGHT_PER_WORKER times the workers /health reports ready, running or starting, and at
least IN_FLIGHT_FLOOR, so a cold endpoint still gets the work that makes RunPod scale it up.

A dispatcher checks its endpoints every HEALTH_CHECK_INTERVAL and keeps what it learnt in
`endpoint_states`, where the API reads it for queue positions, ETAs and admission.
"""

import statistics
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from app.core.allowance import Bucket
from app.core.config import Settings
from app.core.db import database_now
from app.jobs.models import Job
from app.jobs.status import JobStatus
from app.runpod import HealthReport
from app.scheduler.circuit import Circuit, after_health, health_trip
from app.scheduler.models import EndpointState
from app.scheduler.routes import Endpoint

# The recent jobs whose times describe an endpoint, and how many of them at most.
RECENT = timedelta(minutes=15)
_RECENT_JOBS = 2000
IN_FLIGHT = (JobStatus.QUEUED.value, JobStatus.RUNNING.value)


def run_bucket(settings: Settings) -> Bucket:
    """An endpoint's share of RunPod's /run allowance, for every process that submits to it."""
    return Bucket.within(settings.runpod_run_rate_limit, settings.runpod_status_rate_window)


def max_in_flight(settings: Settings, endpoint: Endpoint, workers: dict[str, int]) -> int:
    if endpoint.max_in_flight or settings.max_in_flight:
        return endpoint.max_in_flight or settings.max_in_flight
    usable = (
        max(workers.get("idle", 0), workers.get("ready", 0))
        + workers.get("running", 0)
        + workers.get("initializing", 0)
    )
    return max(settings.in_flight_floor, int(usable * settings.in_flight_per_worker))


def endpoint_loads(
    session: Session, endpoint_ids: list[str]
) -> tuple[dict[str, int], dict[str, Circuit]]:
    """The jobs each endpoint holds (queued or running at RunPod), and each one's circuit."""
    held = session.execute(
        select(Job.endpoint, func.count())
        .where(Job.endpoint.in_(endpoint_ids), Job.status.in_(IN_FLIGHT))
        .group_by(Job.endpoint)
    ).tuples()
    circuits = session.execute(
        select(EndpointState.endpoint, EndpointState.circuit).where(
            EndpointState.endpoint.in_(endpoint_ids)
        )
    ).tuples()
    return (
        {endpoint: count for endpoint, count in held if endpoint},
        {endpoint: Circuit(circuit) for endpoint, circuit in circuits},
    )


def record_health(
    session: Session,
    settings: Settings,
    endpoint: Endpoint,
    report: HealthReport | None,
    error: str | None,
) -> EndpointState:
    """Keep what /health said (or that it failed) with the endpoint's recent times, and open or
    half-open its circuit by them (`app.scheduler.circuit`)."""
    now = database_now(session)
    state = session.get(EndpointState, endpoint.id, with_for_update=True)
    if state is None:
        state = EndpointState(endpoint=endpoint.id, circuit=Circuit.CLOSED, trips=0, run_failures=0)
    if report is not None or state.checked_at is None:
        workers = dict(report.workers) if report else {}
        state.workers, state.jobs = workers, dict(report.jobs) if report else {}
        state.max_in_flight = max_in_flight(settings, endpoint, workers)
    state.route, state.checked_at, state.error = endpoint.route, now, error
    if report is not None:
        route = settings.catalogue.routes[endpoint.route]
        # An endpoint out of rotation is probed only once a worker there can run.
        waiting = (
            state.circuit != Circuit.CLOSED
            or report.job_count("inQueue") > 0
            or _pending(session, endpoint.route)
        )
        oldest = _oldest_queued_s(session, endpoint, now)
        reason = health_trip(route, report, waiting=waiting, oldest_queued_s=oldest)
        after_health(settings, state, now, reason)
    delays, executions = _recent_times(session, endpoint, since=now - RECENT)
    state.queue_delay_p50_ms = int(statistics.median(delays)) if delays else None
    state.execution_p50_ms = int(statistics.median(executions)) if executions else None
    state.service_rate = service_rate(settings, state)
    session.add(state)
    return state


def service_rate(settings: Settings, state: EndpointState) -> float:
    """Jobs per second the endpoint can start: RunPod's /run allowance, or fewer when its
    in-flight cap turns over more slowly (each job holds its place for its time at RunPod)."""
    allowance = run_bucket(settings).rate
    held_ms = (state.queue_delay_p50_ms or 0) + (state.execution_p50_ms or 0)
    if not held_ms:
        return allowance
    return min(allowance, state.max_in_flight / (held_ms / 1000))


def _pending(session: Session, route: str) -> bool:
    query = select(Job.id).where(Job.status == JobStatus.PENDING.value, Job.route == route)
    return session.scalar(query.limit(1)) is not None


def _queued_at(endpoint: Endpoint) -> ColumnElement[bool]:
    """The endpoint's jobs accepted by RunPod and not known to have started."""
    return (Job.endpoint == endpoint.id) & (Job.status == JobStatus.QUEUED.value)


def _oldest_queued_s(session: Session, endpoint: Endpoint, now: datetime) -> float | None:
    """How long the job longest in the endpoint's queue (accepted, not started) has waited."""
    oldest = session.scalar(select(func.min(Job.submitted_at)).where(_queued_at(endpoint)))
    return None if oldest is None else (now - oldest).total_seconds()


def overdue_queued(
    session: Session, settings: Settings, endpoint: Endpoint, limit: int
) -> list[str]:
    """The endpoint's jobs held as queued longer than its route's `max_queue_delay`, the
    oldest first: those that would take it out of rotation."""
    max_delay = timedelta(seconds=settings.catalogue.routes[endpoint.route].max_queue_delay_s)
    query = (
        select(Job.id)
        .where(_queued_at(endpoint), Job.submitted_at < database_now(session) - max_delay)
        .order_by(Job.submitted_at)
        .limit(limit)
    )
    return list(session.scalars(query))


def _recent_times(
    session: Session, endpoint: Endpoint, *, since: object
) -> tuple[list[int], list[int]]:
    rows = session.execute(
        select(Job.delay_ms, Job.execution_ms)
        .where(Job.endpoint == endpoint.id, Job.finished_at > since)
        .where(Job.status == JobStatus.COMPLETED.value)
        .order_by(Job.finished_at.desc())
        .limit(_RECENT_JOBS)
    ).all()
    delays = [delay for delay, _ in rows if delay is not None]
    executions = [execution for _, execution in rows if execution is not None]
    return delays, executions


def endpoint_states(session: Session, route: str | None = None) -> list[EndpointState]:
    query = select(EndpointState).order_by(EndpointState.endpoint)
    if route is not None:
        query = query.where(EndpointState.route == route)
    return list(session.scalars(query))
