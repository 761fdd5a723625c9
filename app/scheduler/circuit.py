"""Each endpoint's circuit: whether the dispatchers send it work.

    closed ──(trips)──▶ open ──(cooldown over)──▶ half_open ──(probe accepted)──▶ closed
                          ▲                           │
                          └──────(probe fails)────────┘

An endpoint trips when /run fails CIRCUIT_FAILURES times in a row in a way that proves RunPod
never took the job (refused, unreachable, 5xx, 429, bad key; never an ambiguous answer), when its
/health shows no worker able to run (throttled or unhealthy) while jobs wait, or when a job has
waited in its queue longer than its route's `max_queue_delay`. It then stays out of rotation for
a cooldown that doubles, with jitter, each time it trips again (CIRCUIT_COOLDOWN up to
CIRCUIT_COOLDOWN_MAX); after it, a half-open endpoint whose /health no longer trips it takes one
probe job, and the probe's acceptance closes it.

The state lives in `endpoint_states`, so every dispatcher (one per worker) sees the same.
"""

import random
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import bindparam, case, select, update
from sqlalchemy.orm import Session

from app.core.config import Settings
from app.core.db import UTCDateTime, database_now, utcnow
from app.runpod import (
    AuthenticationError,
    HealthReport,
    NotFoundError,
    RateLimitError,
    RunPodConnectionError,
    RunPodError,
    ServerError,
)
from app.runpod.errors import AmbiguousSubmissionError
from app.scheduler.models import EndpointState
from app.scheduler.routes import Route

# A worker RunPod reports in one of these can take a job.
USABLE_WORKERS = ("idle", "ready", "running", "initializing")
_STUCK_WORKERS = ("throttled", "unhealthy")


class Circuit(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


def endpoint_failed(error: RunPodError) -> bool:
    """Whether a /run failure is the endpoint's (and RunPod surely never took the job)."""
    if isinstance(error, AmbiguousSubmissionError):
        return False
    endpoint_errors = (AuthenticationError, NotFoundError, RateLimitError, ServerError)
    return isinstance(error, (*endpoint_errors, RunPodConnectionError))


def cooldown(settings: Settings, trips: int) -> timedelta:
    """How long an endpoint stays open after tripping `trips` times in a row: doubling, with
    jitter so that endpoints that tripped together are not all probed at once."""
    base = min(settings.circuit_cooldown_max, settings.circuit_cooldown * 2 ** max(0, trips - 1))
    return timedelta(seconds=base * random.uniform(0.8, 1.2))  # noqa: S311 - jitter, not a secret


def trip(settings: Settings, state: EndpointState, now: datetime, reason: str) -> None:
    state.trips = (state.trips or 0) + 1
    state.circuit, state.circuit_reason, state.circuit_since = Circuit.OPEN, reason[:200], now
    state.retry_at = now + cooldown(settings, state.trips)
    state.run_failures = 0


def close(state: EndpointState, now: datetime) -> None:
    state.circuit, state.circuit_reason, state.circuit_since = Circuit.CLOSED, None, now
    state.retry_at, state.trips, state.run_failures = None, 0, 0


def health_trip(
    route: Route, report: HealthReport, *, waiting: bool, oldest_queued_s: float | None
) -> str | None:
    """Why /health and the endpoint's queue take it out of rotation, if they do."""
    workers = report.workers
    usable = sum(workers.get(kind, 0) for kind in USABLE_WORKERS)
    stuck = {kind: workers.get(kind, 0) for kind in _STUCK_WORKERS if workers.get(kind, 0)}
    if waiting and not usable and stuck:
        described = ", ".join(f"{count} {kind}" for kind, count in stuck.items())
        return f"no worker can run ({described}) while jobs wait"
    if oldest_queued_s is not None and oldest_queued_s > route.max_queue_delay_s:
        return (
            f"a job has waited {oldest_queued_s:.0f} s in its queue "
            f"(max_queue_delay {route.max_queue_delay_s:g} s)"
        )
    return None


def after_health(
    settings: Settings, state: EndpointState, now: datetime, reason: str | None
) -> None:
    """Trip, reopen a half-open endpoint, or let an open one whose cooldown is over be probed."""
    circuit = Circuit(state.circuit or Circuit.CLOSED)
    if reason is not None:
        if circuit is not Circuit.OPEN or (state.retry_at and now >= state.retry_at):
            trip(settings, state, now, reason)
        return
    if circuit is Circuit.OPEN and state.retry_at is not None and now >= state.retry_at:
        state.circuit, state.circuit_since = Circuit.HALF_OPEN, now


_HALF_OPEN = EndpointState.circuit == Circuit.HALF_OPEN
# Built once: an acceptance is recorded for every group of /run answers, and building this
# statement anew each time cost more CPU than running it.
_CLOSE_ON_ACCEPTANCE = (
    update(EndpointState)
    .where(EndpointState.endpoint == bindparam("endpoint_id"))
    .where(
        _HALF_OPEN | ((EndpointState.circuit == Circuit.CLOSED) & (EndpointState.run_failures > 0))
    )
    .values(
        run_failures=0,
        **{
            column: case((_HALF_OPEN, value), else_=getattr(EndpointState, column))
            for column, value in (
                ("circuit", Circuit.CLOSED.value),
                ("circuit_reason", None),
                ("circuit_since", bindparam("now", type_=UTCDateTime())),
                ("retry_at", None),
                ("trips", 0),
            )
        },
    )
    .execution_options(synchronize_session=False)
)


def record_run_outcomes(
    session: Session, settings: Settings, endpoint_id: str, accepted: int, failures: list[str]
) -> None:
    """Count one group of /run answers: an acceptance closes a half-open endpoint and clears
    the failures in a row; the endpoint's own failures (`endpoint_failed`) trip it at
    CIRCUIT_FAILURES. Rows are locked only when they change."""
    if accepted:
        session.execute(_CLOSE_ON_ACCEPTANCE, {"endpoint_id": endpoint_id, "now": utcnow()})
    if not failures:
        return
    state = session.scalar(
        select(EndpointState).where(EndpointState.endpoint == endpoint_id).with_for_update()
    )
    if state is None or state.circuit == Circuit.OPEN:
        return
    state.run_failures = (state.run_failures or 0) + len(failures)
    if state.circuit == Circuit.HALF_OPEN or state.run_failures >= settings.circuit_failures:
        reason = f"/run failed {state.run_failures} times in a row: {failures[-1]}"
        trip(settings, state, database_now(session), reason)
