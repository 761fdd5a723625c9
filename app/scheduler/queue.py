"""A job's place in the gateway-held queue: its fair tag when it is accepted, whether the queue
can start it before its deadline, and its position and ETA while it waits.

Honest admission: a request whose jobs would wait behind more work than the route's endpoints
can start before the jobs' deadlines is refused with 503 `queue_full` and a Retry-After, instead
of being accepted only to time out unseen. The backlog that counts is the one ahead of the new
jobs in dispatch order, so a key flooding a route is refused before the other keys are.
"""

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from app.core.errors import PodrelayError
from app.jobs.models import Job
from app.jobs.status import JobStatus
from app.scheduler.capacity import endpoint_states
from app.scheduler.fair import Queue, claim_tags, first_tag, last_tags, virtual_times
from app.scheduler.models import EndpointState

_PENDING = JobStatus.PENDING.value


class QueueFull(PodrelayError):
    status_code, code, title, retryable = 503, "queue_full", "Queue full", True


@dataclass(frozen=True, slots=True)
class Placement:
    """The jobs of one request, to place in one queue for one owner."""

    queue: Queue
    owner: str
    weight: float
    count: int
    timeout_s: float


@dataclass(frozen=True, slots=True)
class RouteSpeed:
    rate: float  # jobs per second its endpoints start, together
    runtime_s: float  # a job's median time at RunPod once started


def route_speeds(session: Session) -> dict[str, RouteSpeed]:
    """What the dispatchers last learnt of each route's endpoints (none yet: no estimate)."""
    grouped: dict[str, list[EndpointState]] = defaultdict(list)
    for state in endpoint_states(session):
        grouped[state.route].append(state)
    return {
        route: RouteSpeed(
            rate=sum(state.service_rate for state in states),
            runtime_s=max(
                ((state.queue_delay_p50_ms or 0) + (state.execution_p50_ms or 0)) / 1000
                for state in states
            ),
        )
        for route, states in grouped.items()
    }


def admission_refusals(session: Session, placements: Sequence[Placement]) -> list[QueueFull | None]:
    """For each placement in order: `QueueFull` when its route cannot start its jobs before
    their deadline behind the work ahead of them (those let through count for the next)."""
    speeds = route_speeds(session)
    queues = {placement.queue for placement in placements if placement.queue[0] in speeds}
    upper = {queue: _pending_at_or_above(session, queue) for queue in queues}
    clocks = virtual_times(session, queues)
    tags = last_tags(session, {(*p.queue, p.owner) for p in placements if p.queue in queues})
    added: dict[Queue, int] = defaultdict(int)
    refusals: list[QueueFull | None] = []
    for placement in placements:
        speed = speeds.get(placement.queue[0])
        if speed is None:
            refusals.append(None)
            continue
        startable = speed.rate * max(0.0, placement.timeout_s - speed.runtime_s)
        ahead = upper[placement.queue] + added[placement.queue]
        owner_key = (*placement.queue, placement.owner)
        first = first_tag(clocks.get(placement.queue, 0.0), tags.get(owner_key), placement.weight)
        last = first + (placement.count - 1) / placement.weight
        if ahead + placement.count > startable:  # the quick bound failed: count exactly
            ahead = _pending_ahead(session, placement.queue, last) + added[placement.queue]
        if ahead + placement.count > startable:
            wait_s = (ahead + placement.count - startable) / max(speed.rate, 1e-6)
            refusals.append(
                QueueFull(
                    f"the {placement.queue[0]!r} queue cannot start this request before its "
                    f"deadline ({ahead} jobs ahead); retry later",
                    retry_after=max(1.0, wait_s),
                )
            )
            continue
        added[placement.queue] += placement.count
        tags[owner_key] = last
        refusals.append(None)
    return refusals


def reserve_tags(session: Session, placements: Sequence[Placement]) -> list[float]:
    """The first fair tag of each placement's jobs (`app.scheduler.fair`), with one update per
    owner and queue however many requests it made."""
    totals: dict[tuple[Queue, str], int] = defaultdict(int)
    weights: dict[tuple[Queue, str], float] = {}
    for placement in placements:
        totals[placement.queue, placement.owner] += placement.count
        weights[placement.queue, placement.owner] = placement.weight
    clocks = virtual_times(session, {queue for queue, _ in totals})
    next_tag = {
        key: claim_tags(
            session,
            key[0],
            key[1],
            count=count,
            weight=weights[key],
            virtual_time=clocks.get(key[0], 0.0),
        )
        for key, count in sorted(totals.items())  # one lock order for every process
    }
    firsts = []
    for placement in placements:
        key = (placement.queue, placement.owner)
        firsts.append(next_tag[key])
        next_tag[key] += placement.count / placement.weight
    return firsts


@dataclass(frozen=True, slots=True)
class Place:
    """Where a waiting job stands: jobs ahead of it in Podrelay's queue (while pending) and at
    its RunPod endpoint (while queued there), and the seconds until it is expected to finish."""

    podrelay: int | None
    runpod: int | None
    eta_s: float | None


def place_of(session: Session, job: Job) -> Place | None:
    """The job's place while it waits (None once a worker has it)."""
    speed = route_speeds(session).get(job.route)
    if job.status == _PENDING:
        ahead = _pending_ahead(session, (job.route, job.priority), job.fair_tag)
        return Place(podrelay=ahead, runpod=None, eta_s=_eta(speed, ahead))
    if job.status == JobStatus.QUEUED.value:
        query = select(func.count()).where(
            Job.endpoint == job.endpoint,
            Job.status == JobStatus.QUEUED.value,
            Job.submitted_at < job.submitted_at,
        )
        ahead = int(session.scalar(query) or 0)
        return Place(podrelay=None, runpod=ahead, eta_s=_eta(speed, ahead))
    return None


def _eta(speed: RouteSpeed | None, ahead: int) -> float | None:
    """Its turn comes after those ahead of it have started, then it takes its time at RunPod."""
    if speed is None or speed.rate <= 0:
        return None
    return round((ahead + 1) / speed.rate + speed.runtime_s, 1)


def _pending_at_or_above(session: Session, queue: Queue) -> int:
    route, priority = queue
    query = select(func.count()).where(
        Job.status == _PENDING, Job.route == route, Job.priority <= priority
    )
    return int(session.scalar(query) or 0)


def _pending_ahead(session: Session, queue: Queue, tag: float) -> int:
    route, priority = queue
    query = select(func.count()).where(
        Job.status == _PENDING,
        Job.route == route,
        or_(Job.priority < priority, and_(Job.priority == priority, Job.fair_tag < tag)),
    )
    return int(session.scalar(query) or 0)
