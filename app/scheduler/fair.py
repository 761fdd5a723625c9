"""Fair order in the gateway-held queue: strict priority, then start-time fair queueing.

A queue is one route at one priority. Within it each owner (an API key, or another identity)
has a weight, and each new job gets a start tag: the later of the queue's virtual time and the
owner's last tag, plus 1/weight per job of the owner's ahead of it. Jobs leave in tag order, and
the virtual time is the tag of the last job dispatched. So an owner that submits 5,000 jobs at
once gets tags 1..5,000, and another owner's job submitted while the first 200 have gone gets
tag 201: it leaves with the 201st of the flood, not after it, and a burst never delays another
owner by more than one round of dispatches (Goyal, Vin and Cheng, "Start-time Fair Queueing").

The tags are decided where the jobs are recorded (`app.jobs.admission`), so dispatching is one
ordered index scan (`ix_jobs_dispatch_order`), safe with any number of dispatchers.
"""

from collections.abc import Iterable
from enum import StrEnum

from sqlalchemy import case, select, tuple_
from sqlalchemy.orm import Session

from app.core.db import upsert
from app.scheduler.models import FairQueue, QueueClock


class Priority(StrEnum):
    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"

    @property
    def rank(self) -> int:
        """Its place in dispatch order: 0 goes first."""
        return _RANKS[self]

    @classmethod
    def from_rank(cls, rank: int) -> "Priority":
        return _BY_RANK[rank]


_RANKS = {Priority.HIGH: 0, Priority.NORMAL: 1, Priority.LOW: 2}
_BY_RANK = {rank: priority for priority, rank in _RANKS.items()}
Queue = tuple[str, int]  # (route, priority rank)


def virtual_times(session: Session, queues: Iterable[Queue]) -> dict[Queue, float]:
    wanted = set(queues)
    if not wanted:
        return {}
    rows = session.execute(
        select(QueueClock.route, QueueClock.priority, QueueClock.virtual_time).where(
            tuple_(QueueClock.route, QueueClock.priority).in_(wanted)
        )
    )
    return {(route, priority): time for route, priority, time in rows}


def last_tags(
    session: Session, keys: Iterable[tuple[str, int, str]]
) -> dict[tuple[str, int, str], float]:
    """The last tag of each (route, priority, owner) that has one."""
    wanted = set(keys)
    if not wanted:
        return {}
    rows = session.execute(
        select(FairQueue.route, FairQueue.priority, FairQueue.owner, FairQueue.last_tag).where(
            tuple_(FairQueue.route, FairQueue.priority, FairQueue.owner).in_(wanted)
        )
    )
    return {(route, priority, owner): tag for route, priority, owner, tag in rows}


def first_tag(virtual_time: float, last_tag: float | None, weight: float) -> float:
    """The start tag of an owner's next job."""
    return max(virtual_time, last_tag or 0.0) + 1.0 / weight


def claim_tags(
    session: Session, queue: Queue, owner: str, *, count: int, weight: float, virtual_time: float
) -> float:
    """Reserve the tags of an owner's next `count` jobs in `queue`; returns the first. Another
    process reserving for the same owner at once waits for this transaction's row lock (on
    SQLite, the database's), so no two jobs share a tag."""
    route, priority = queue
    step = 1.0 / weight
    insert = upsert(session)(FairQueue).values(
        route=route, priority=priority, owner=owner, last_tag=virtual_time + count * step
    )
    current = FairQueue.last_tag
    last = session.scalar(
        insert.on_conflict_do_update(
            index_elements=[FairQueue.route, FairQueue.priority, FairQueue.owner],
            set_={
                "last_tag": case((current > virtual_time, current), else_=virtual_time)
                + count * step
            },
        ).returning(FairQueue.last_tag)
    )
    assert last is not None
    return float(last) - (count - 1) * step


def advance_clock(session: Session, queue: Queue, dispatched_tag: float) -> None:
    """The queue's virtual time moves to the tag of the latest job dispatched (never back)."""
    route, priority = queue
    insert = upsert(session)(QueueClock).values(
        route=route, priority=priority, virtual_time=dispatched_tag
    )
    current = QueueClock.virtual_time
    session.execute(
        insert.on_conflict_do_update(
            index_elements=[QueueClock.route, QueueClock.priority],
            set_={"virtual_time": case((current > dispatched_tag, current), else_=dispatched_tag)},
        )
    )
