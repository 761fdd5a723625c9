"""The job ledger's tables: batches, jobs, RunPod submissions, events and stored images."""

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Float,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.core.db import Base, UTCDateTime, utcnow


class Batch(Base):
    __tablename__ = "batches"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(Integer)
    webhook_url: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    jobs: Mapped[list["Job"]] = relationship(back_populates="batch", order_by="Job.batch_index")


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_status_next_poll_at", "status", "next_poll_at"),
        # An owner's jobs, and its unfinished ones (the per-key cap counts these).
        Index("ix_jobs_owner_status", "owner", "status"),
        # The gateway-held queue in dispatch order (`app.scheduler`).
        Index("ix_jobs_dispatch_order", "status", "route", "priority", "fair_tag"),
        # An endpoint's jobs in flight (not finished) and its recent ones.
        Index("ix_jobs_endpoint_finished_at", "endpoint", "finished_at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64))
    batch_id: Mapped[str | None] = mapped_column(ForeignKey("batches.id"), index=True)
    batch_index: Mapped[int | None] = mapped_column(Integer)
    prompt: Mapped[str] = mapped_column(Text)
    negative_prompt: Mapped[str | None] = mapped_column(Text)
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), index=True)
    runpod_job_id: Mapped[str | None] = mapped_column(String(96), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    progress: Mapped[Any] = mapped_column(JSON, nullable=True)
    delay_ms: Mapped[int | None] = mapped_column(Integer)
    execution_ms: Mapped[int | None] = mapped_column(Integer)
    timeout_s: Mapped[float] = mapped_column(Float)
    celery_task_id: Mapped[str | None] = mapped_column(String(64), index=True)
    webhook_url: Mapped[str | None] = mapped_column(Text)
    polls: Mapped[int] = mapped_column(Integer, default=0)
    # Where it runs: its route (a model), and the endpoint its latest submission went to.
    route: Mapped[str] = mapped_column(String(64), default="default", server_default="default")
    endpoint: Mapped[str | None] = mapped_column(String(96))
    # Its place in the gateway-held queue: strict priority, then fair order (`app.scheduler`).
    priority: Mapped[int] = mapped_column(SmallInteger, default=1, server_default="1")
    fair_tag: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    # The trace of the request that asked for it (W3C, version 00): its later spans join it.
    traceparent: Mapped[str | None] = mapped_column(String(55))

    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    submitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Indexed for the retention sweep, which looks for jobs that finished long enough ago.
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    deadline_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    # When the tracker should next look at this job (submit again, or poll RunPod).
    next_poll_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # A tracker working on the job holds it until then, so no other one touches it meanwhile.
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claim_token: Mapped[str | None] = mapped_column(String(16), index=True)

    batch: Mapped[Batch | None] = relationship(back_populates="jobs")
    submissions: Mapped[list["Submission"]] = relationship(
        back_populates="job", order_by="Submission.id"
    )
    images: Mapped[list["JobImage"]] = relationship(back_populates="job", order_by="JobImage.index")


class Submission(Base):
    """One POST /run for a job. Its token is the secret in the webhook URL sent with it."""

    __tablename__ = "submissions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), index=True)
    token: Mapped[str] = mapped_column(String(64), unique=True)
    outcome: Mapped[str] = mapped_column(String(16))  # sending|accepted|ambiguous|rejected
    endpoint: Mapped[str | None] = mapped_column(String(96))
    runpod_job_id: Mapped[str | None] = mapped_column(String(96), index=True)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    job: Mapped[Job] = relationship(back_populates="submissions")


class JobEvent(Base):
    """The job's timeline: every state change and notable happening, in order."""

    __tablename__ = "job_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    kind: Mapped[str] = mapped_column(String(32))
    status: Mapped[str | None] = mapped_column(String(16))
    message: Mapped[str | None] = mapped_column(Text)
    data: Mapped[Any] = mapped_column(JSON, nullable=True)


class JobImage(Base):
    """One image of a completed job, kept in the media store so it outlives RunPod's links."""

    __tablename__ = "job_images"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), index=True)
    index: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))  # pending|stored|failed|deleted
    source_url: Mapped[str | None] = mapped_column(Text)
    # Kept after deletion: the object goes once no image that is not deleted shares the key.
    storage_key: Mapped[str | None] = mapped_column(String(128), index=True)
    sha256: Mapped[str | None] = mapped_column(String(64))
    mime_type: Mapped[str | None] = mapped_column(String(64))
    size_bytes: Mapped[int | None] = mapped_column(Integer)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    seed: Mapped[int | None] = mapped_column(BigInteger)
    download_attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    job: Mapped[Job] = relationship(back_populates="images")
