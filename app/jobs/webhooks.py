"""RunPod's job webhooks. RunPod signs nothing, so the secret is the per-submission token in
the URL; a body is applied only to the job and RunPod job that token belongs to.

Deliveries may repeat or arrive out of order: readings go through `apply_state`, which never
moves a job backwards. A webhook from an orphaned submission (one whose /run answer was lost)
is how a duplicate RunPod job is found; the first result wins and the other job is cancelled.
"""

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.batching import GroupRunner, in_thread
from app.core.db import Database
from app.core.errors import PodrelayError
from app.core.tracing import job_span
from app.jobs.handoff import send_task
from app.jobs.models import Job, JobImage, Submission
from app.jobs.results import apply_state
from app.jobs.service import MOVED, MOVING, add_event, lock_jobs, locked_job
from app.jobs.status import JobStatus
from app.media.store import MediaStore
from app.runpod import JobState
from app.runpod.models import RunPodStatus

# How long a hand-over of images waits for others to share its message: a download starts
# this much later (the image's source serves it meanwhile), and the workers handle one
# Celery message for several jobs instead of one each (most deliveries come alone).
IMAGE_HANDOVER_LINGER_S = 0.05


class WebhookRejected(PodrelayError):
    """The delivery does not belong to the token it came with."""

    code = "webhook_rejected"
    _TITLES: ClassVar = {400: "Bad request", 404: "Not found", 409: "Conflict"}

    def __init__(self, message: str, *, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.title = self._TITLES[status_code]


@dataclass
class WebhookOutcome:
    job_id: str
    changed: bool
    # (RunPod job, its endpoint) to cancel: a duplicate no longer needed.
    cancel_runpod_jobs: list[tuple[str, str | None]] = field(default_factory=list)
    # Its result has images to download (set once the delivery is applied).
    images_due: bool = False


def receive_runpod_webhooks(
    session: Session, deliveries: Sequence[tuple[str, Any]], *, store: MediaStore
) -> list[WebhookOutcome | WebhookRejected]:
    """Apply (token, body) deliveries in one transaction: their submissions are read and their
    jobs locked with one query each. Each gets its outcome, or the rejection that left it out."""
    tokens = {token for token, _ in deliveries}
    submissions = {
        submission.token: submission
        for submission in session.scalars(select(Submission).where(Submission.token.in_(tokens)))
    }
    jobs = lock_jobs(session, (submission.job_id for submission in submissions.values()))
    outcomes: list[WebhookOutcome | WebhookRejected] = []
    for token, payload in deliveries:
        submission = submissions.get(token)
        job = jobs.get(submission.job_id) if submission is not None else None
        job_trace = (job.id, job.traceparent) if job is not None else (None, None)
        try:
            with job_span("podrelay.webhook", *job_trace):
                outcomes.append(_receive(session, submission, payload, store=store))
        except WebhookRejected as rejection:
            outcomes.append(rejection)
    return outcomes


def _receive(
    session: Session, submission: Submission | None, payload: Any, *, store: MediaStore
) -> WebhookOutcome:
    """Raises `WebhookRejected` before it changes anything."""
    if submission is None:
        raise WebhookRejected("unknown webhook token", status_code=404)
    if not isinstance(payload, dict) or not isinstance(payload.get("id"), str):
        raise WebhookRejected("the body is not a RunPod job object", status_code=400)
    state = JobState.from_payload(payload)
    if submission.runpod_job_id is None:
        # The answer to this /run was lost; the body tells which RunPod job it made, unless
        # that job is known as another submission's (a genuine body replayed to this URL).
        if _belongs_to_another_submission(session, submission, state.id):
            raise WebhookRejected("the body is for another RunPod job", status_code=409)
        submission.runpod_job_id = state.id
    elif submission.runpod_job_id != state.id:
        raise WebhookRejected("the body is for another RunPod job", status_code=409)
    job = locked_job(session, submission.job_id)
    outcome = WebhookOutcome(job_id=job.id, changed=False)
    if submission.outcome in (MOVING, MOVED) and state.status is RunPodStatus.CANCELLED:
        return outcome  # cancelled to move to another endpoint (`app.jobs.failover`)
    if job.runpod_job_id is None and not JobStatus(job.status).is_terminal:
        job.runpod_job_id, job.endpoint = state.id, submission.endpoint
    elif job.runpod_job_id != state.id:
        _resolve_duplicate(session, job, state, outcome, submission.endpoint)
        if job.runpod_job_id != state.id:
            return outcome
    outcome.changed = apply_state(session, job, state, store=store, source="webhook")
    return outcome


def _belongs_to_another_submission(
    session: Session, submission: Submission, runpod_job_id: str
) -> bool:
    other = session.scalar(
        select(Submission.id)
        .where(Submission.runpod_job_id == runpod_job_id, Submission.id != submission.id)
        .limit(1)
    )
    return other is not None


def _resolve_duplicate(
    session: Session, job: Job, state: JobState, outcome: WebhookOutcome, endpoint: str | None
) -> None:
    """Two RunPod jobs for one of ours: keep the first result, cancel whatever still runs."""
    add_event(
        session, job, "duplicate_detected", message=state.id, data={"kept": job.runpod_job_id}
    )
    takes_over = state.status is RunPodStatus.COMPLETED and not JobStatus(job.status).is_terminal
    if takes_over:
        if job.runpod_job_id:
            outcome.cancel_runpod_jobs.append((job.runpod_job_id, job.endpoint))
        job.runpod_job_id, job.endpoint = state.id, endpoint
    elif not state.is_terminal:
        outcome.cancel_runpod_jobs.append((state.id, endpoint))


@dataclass(frozen=True)
class WebhookDelivery:
    token: str
    payload: Any


class WebhookReceiver:
    """Per API process: concurrent deliveries share one transaction; then the duplicates to
    cancel and the images to download go to the workers, the images of deliveries that meet
    within `IMAGE_HANDOVER_LINGER_S` in one message."""

    def __init__(self, db: Database, store: MediaStore) -> None:
        self._db = db
        self._store = store
        self._groups: GroupRunner[WebhookDelivery, WebhookOutcome] = GroupRunner(self._receive)
        self._image_handovers: GroupRunner[str, None] = GroupRunner(
            in_thread(_hand_over_images), parallel=1, linger=IMAGE_HANDOVER_LINGER_S
        )

    async def receive(self, delivery: WebhookDelivery) -> WebhookOutcome:
        """Apply one delivery; raises `WebhookRejected` when it is not the token's. Answers
        once its follow-ups are queued (a broker outage raises: RunPod then retries)."""
        outcome = await self._groups.run(delivery)
        # Sent only after the commit, so the tasks always find what they look for.
        if outcome.images_due:
            await self._image_handovers.run(outcome.job_id)
        if outcome.cancel_runpod_jobs:
            await asyncio.to_thread(_cancel_duplicates, outcome.cancel_runpod_jobs)
        return outcome

    async def _receive(self, deliveries: list[WebhookDelivery]) -> list[WebhookOutcome | Exception]:
        try:
            # In a thread: images the output carries inline are written to the media store.
            return list(await self._db.run_in_thread(self._apply, deliveries))
        except Exception:  # one delivery broke the shared transaction: each on its own
            if len(deliveries) == 1:
                raise
            return [await self._receive_alone(delivery) for delivery in deliveries]

    async def _receive_alone(self, delivery: WebhookDelivery) -> WebhookOutcome | Exception:
        try:
            return (await self._receive([delivery]))[0]
        except Exception as error:  # noqa: BLE001 - handed to this delivery's caller
            return error

    def _apply(
        self, session: Session, deliveries: list[WebhookDelivery]
    ) -> list[WebhookOutcome | WebhookRejected]:
        outcomes = receive_runpod_webhooks(
            session, [(d.token, d.payload) for d in deliveries], store=self._store
        )
        changed = {o.job_id: o for o in outcomes if isinstance(o, WebhookOutcome) and o.changed}
        if changed:
            query = select(JobImage.job_id).where(
                JobImage.job_id.in_(changed), JobImage.state == "pending"
            )
            for job_id in session.scalars(query.distinct()):
                changed[job_id].images_due = True
        return outcomes


def _hand_over_images(job_ids: list[str]) -> list[None]:
    """One message for the due images of every delivery in the group (a broker publish
    blocks: off the loop)."""
    send_task("store_images_task", sorted(set(job_ids)))
    return [None] * len(job_ids)


def _cancel_duplicates(runpod_jobs: list[tuple[str, str | None]]) -> None:
    for runpod_job_id, endpoint in runpod_jobs:
        send_task("cancel_runpod_job_task", runpod_job_id, endpoint)
