"""The routes as callers and operators see them: each route's configuration, and each of its
endpoints' live health as the dispatchers last recorded it (`endpoint_states`), with
Podrelay's own jobs there. `GET /models`, the queue statistics and `/metrics` all read this.

Nothing here names an endpoint's base URL, its API key or the variable holding the key.
"""

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.core.config import Settings
from app.jobs.models import Job
from app.jobs.status import JobStatus
from app.scheduler.capacity import IN_FLIGHT, endpoint_states
from app.scheduler.circuit import Circuit
from app.scheduler.models import EndpointState
from app.scheduler.routes import Endpoint, Route
from app.services.generation_defaults import DEFAULT_PARAMS

# The worker states RunPod's /health reports, and its job counts as named here.
WORKER_STATES = ("idle", "ready", "running", "initializing", "throttled", "unhealthy")
RUNPOD_JOBS = {"in_queue": "inQueue", "in_progress": "inProgress"}
# The parameters a route may set defaults for that a model picker shows.
_SHOWN_DEFAULTS = ("width", "height", "num_inference_steps", "guidance_scale", "num_images")


@dataclass(frozen=True, slots=True)
class EndpointOverview:
    """An endpoint; its health fields stay None until a dispatcher has checked it."""

    id: str
    weight: float
    queued_jobs: int  # Podrelay's jobs accepted by the endpoint, not started
    running_jobs: int
    max_in_flight: int | None = None
    # WORKER_STATES and RUNPOD_JOBS' keys; None also for a count RunPod did not report.
    workers: dict[str, int | None] = field(default_factory=lambda: dict.fromkeys(WORKER_STATES))
    runpod_jobs: dict[str, int | None] = field(default_factory=lambda: dict.fromkeys(RUNPOD_JOBS))
    queue_delay_p50_ms: int | None = None
    execution_p50_ms: int | None = None
    circuit: Circuit = Circuit.CLOSED
    circuit_reason: str | None = None
    circuit_since: datetime | None = None
    retry_at: datetime | None = None
    trips: int = 0
    checked_at: datetime | None = None
    error: str | None = None  # why the last /health failed


@dataclass(frozen=True, slots=True)
class RouteOverview:
    name: str
    default: bool
    kind: str
    price_per_second: float
    max_queue_delay_s: float
    defaults: dict[str, Any]
    bounds: dict[str, int]
    fallbacks: tuple[str, ...]
    pending_jobs: int  # Podrelay's jobs waiting for one of its endpoints
    endpoints: tuple[EndpointOverview, ...]

    @property
    def waiting_jobs(self) -> int:
        """Jobs not yet running: pending here, or queued at its endpoints."""
        return self.pending_jobs + sum(endpoint.queued_jobs for endpoint in self.endpoints)


def route_overviews(session: Session, settings: Settings) -> list[RouteOverview]:
    """Every route of the catalogue, the default first, with its endpoints' health."""
    catalogue = settings.catalogue
    states = {state.endpoint: state for state in endpoint_states(session)}
    pending: dict[str, int] = defaultdict(int)
    held: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for route, endpoint_id, status, count in session.execute(
        select(Job.route, Job.endpoint, Job.status, func.count())
        .where(Job.status.in_((JobStatus.PENDING.value, *IN_FLIGHT)))
        .group_by(Job.route, Job.endpoint, Job.status)
    ).tuples():
        if status == JobStatus.PENDING.value:
            pending[str(route)] += int(count)
        elif endpoint_id is not None:
            held[str(endpoint_id)][str(status)] += int(count)
    names = sorted(catalogue.routes, key=lambda name: name != catalogue.default)
    return [
        _route(
            catalogue.routes[name],
            default=name == catalogue.default,
            price=settings.price_of(name),
            pending=pending.get(name, 0),
            endpoints=tuple(
                _endpoint(endpoint, states.get(endpoint.id), held.get(endpoint.id, {}))
                for endpoint in catalogue.routes[name].endpoints
            ),
        )
        for name in names
    ]


def _route(
    route: Route,
    *,
    default: bool,
    price: float,
    pending: int,
    endpoints: tuple[EndpointOverview, ...],
) -> RouteOverview:
    defaults = DEFAULT_PARAMS.model_dump(include=set(_SHOWN_DEFAULTS)) | dict(route.defaults)
    return RouteOverview(
        name=route.name,
        default=default,
        kind=route.kind.value,
        price_per_second=price,
        max_queue_delay_s=route.max_queue_delay_s,
        defaults=defaults,
        bounds=route.bounds.model_dump(),
        fallbacks=route.fallbacks,
        pending_jobs=pending,
        endpoints=endpoints,
    )


def _endpoint(
    endpoint: Endpoint, state: EndpointState | None, held: dict[str, int]
) -> EndpointOverview:
    queued, running = held.get(JobStatus.QUEUED.value, 0), held.get(JobStatus.RUNNING.value, 0)
    if state is None:  # no dispatcher has checked it yet
        return EndpointOverview(endpoint.id, endpoint.weight, queued, running)
    workers, jobs = dict(state.workers or {}), dict(state.jobs or {})
    return EndpointOverview(
        endpoint.id,
        endpoint.weight,
        queued,
        running,
        max_in_flight=state.max_in_flight,
        workers={name: _count(workers.get(name)) for name in WORKER_STATES},
        runpod_jobs={name: _count(jobs.get(key)) for name, key in RUNPOD_JOBS.items()},
        queue_delay_p50_ms=state.queue_delay_p50_ms,
        execution_p50_ms=state.execution_p50_ms,
        circuit=Circuit(state.circuit or Circuit.CLOSED),
        circuit_reason=state.circuit_reason,
        circuit_since=state.circuit_since,
        retry_at=state.retry_at,
        trips=state.trips or 0,
        checked_at=state.checked_at,
        error=state.error,
    )


def _count(value: object) -> int | None:
    return value if isinstance(value, int) else None
