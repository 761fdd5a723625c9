"""The scheduler's tables: fair-queue state per owner and per queue, and each endpoint's state.

A queue is one route at one priority. `FairQueue` holds each owner's last fair tag in a queue
and `QueueClock` the queue's virtual time (`app.scheduler.fair`); `EndpointState` holds what a
dispatcher last learnt of an endpoint (`app.scheduler.capacity`).
"""

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, Integer, SmallInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, UTCDateTime


class FairQueue(Base):
    __tablename__ = "fair_queues"

    route: Mapped[str] = mapped_column(String(64), primary_key=True)
    priority: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    owner: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_tag: Mapped[float] = mapped_column(Float)


class QueueClock(Base):
    __tablename__ = "queue_clocks"

    route: Mapped[str] = mapped_column(String(64), primary_key=True)
    priority: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    virtual_time: Mapped[float] = mapped_column(Float)


class EndpointState(Base):
    """An endpoint as a dispatcher last saw it: RunPod's /health, and what it can take."""

    __tablename__ = "endpoint_states"

    endpoint: Mapped[str] = mapped_column(String(96), primary_key=True)
    route: Mapped[str] = mapped_column(String(64))
    checked_at: Mapped[datetime] = mapped_column(UTCDateTime)
    workers: Mapped[dict[str, Any]] = mapped_column(JSON)
    jobs: Mapped[dict[str, Any]] = mapped_column(JSON)
    max_in_flight: Mapped[int] = mapped_column(Integer)
    # Jobs per second it can start, and the medians of its recent jobs' times at RunPod.
    service_rate: Mapped[float] = mapped_column(Float)
    queue_delay_p50_ms: Mapped[int | None] = mapped_column(Integer)
    execution_p50_ms: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(String(200))
    # Its circuit (`app.scheduler.circuit`): closed, open (out of rotation until `retry_at`)
    # or half_open (one probe job); why it opened, how many times in a row, and the /run
    # failures in a row that count towards opening it.
    circuit: Mapped[str] = mapped_column(String(16), default="closed", server_default="closed")
    circuit_reason: Mapped[str | None] = mapped_column(String(200))
    circuit_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    retry_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    trips: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    run_failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
