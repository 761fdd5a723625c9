"""Moving jobs off an endpoint that is out of rotation (`app.scheduler.circuit`).

Its pending jobs need nothing: no dispatcher sends it work, so the route's other endpoints and
its fallback routes take them. A job RunPod holds in the endpoint's queue moves only once
RunPod confirmed its cancel there (`CANCELLED`): it is then back in Podrelay's queue at its old
place, free for any endpoint. A job that may be running there stays: one RunPod may have
started (status `running`), or whose /run answer was ambiguous at any time.

While a move is under way the job is leased (the tracker leaves it alone) and its submission is
`moving`, so the webhook RunPod sends for the cancel does not end the job; once moved, the
submission is `moved` and its `CANCELLED` readings are ignored for good.
"""

import asyncio

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from app.core.allowance import Bucket
from app.jobs.engine import JobEngine
from app.jobs.models import Job, Submission
from app.jobs.service import MOVED, MOVING, add_event, claim, lock_jobs, locked_job, release
from app.jobs.status import JobStatus
from app.runpod import JobState, RunPodError, RunPodStatus
from app.scheduler.routes import Endpoint

# The most queued jobs one pass tries to move (each costs a /cancel).
_PASS = 100


async def move_queued_jobs(engine: JobEngine, endpoint: Endpoint) -> int:
    """Cancel the jobs waiting in the endpoint's queue at RunPod and put back in Podrelay's
    queue those whose cancel RunPod confirmed; returns how many moved."""
    settings = engine.settings
    bucket = Bucket.within(settings.runpod_cancel_rate_limit, settings.runpod_status_rate_window)
    granted = await engine.allowance.take(f"{endpoint.id}:cancel", _PASS, bucket)
    if granted <= 0:
        return 0
    targets = await engine.db.run(_claim_queued, engine, endpoint, granted)
    await engine.allowance.refund(f"{endpoint.id}:cancel", granted - len(targets), bucket)
    if not targets:
        return 0
    client = engine.client(endpoint.id)

    async def cancel(runpod_job_id: str) -> JobState | RunPodError:
        async with engine.runpod_slots:
            try:
                return await client.cancel(runpod_job_id)
            except RunPodError as error:
                return error

    answers = await asyncio.gather(*(cancel(runpod_id) for _, runpod_id in targets))
    confirmed = {
        runpod_id
        for (_, runpod_id), answer in zip(targets, answers, strict=True)
        if isinstance(answer, JobState) and answer.status is RunPodStatus.CANCELLED
    }
    return await engine.db.run(_settle, endpoint, targets, confirmed)


def _claim_queued(
    session: Session, engine: JobEngine, endpoint: Endpoint, limit: int
) -> list[tuple[str, str]]:
    """Lease up to `limit` of the jobs queued at the endpoint that may move, and mark their
    submissions `moving`; returns (job id, RunPod id) pairs."""
    ambiguous = exists().where(Submission.job_id == Job.id, Submission.outcome == "ambiguous")
    candidates = session.scalars(
        select(Job.id)
        .where(Job.endpoint == endpoint.id, Job.status == JobStatus.QUEUED.value)
        .where(Job.runpod_job_id.is_not(None), ~ambiguous)
        .order_by(Job.submitted_at)
        .limit(limit)
    ).all()
    jobs = claim(session, list(candidates), lease_s=engine.settings.poll_lease)
    pairs = [(job.id, job.runpod_job_id) for job in jobs if job.runpod_job_id]
    _mark(session, pairs, MOVING)
    return pairs


def _settle(
    session: Session, endpoint: Endpoint, targets: list[tuple[str, str]], confirmed: set[str]
) -> int:
    lock_jobs(session, (job_id for job_id, _ in targets))
    moved: list[tuple[str, str]] = []
    for job_id, runpod_id in targets:
        job = locked_job(session, job_id)
        if (
            runpod_id in confirmed
            and job.status == JobStatus.QUEUED.value
            and job.runpod_job_id == runpod_id
        ):
            job.status, job.runpod_job_id, job.endpoint = JobStatus.PENDING.value, None, None
            job.submitted_at = None
            add_event(
                session,
                job,
                "moved",
                message=f"cancelled at {endpoint.id} before it started; back in the queue",
                data={"from": endpoint.id, "runpod_job_id": runpod_id},
            )
            moved.append((job_id, runpod_id))
            release(job, next_check_at=job.created_at)  # due at once
        else:
            release(job, next_check_at=job.next_poll_at)
    _mark(session, moved, MOVED)
    others = [pair for pair in targets if pair not in moved]
    _mark(session, others, "accepted")
    return len(moved)


def _mark(session: Session, pairs: list[tuple[str, str]], outcome: str) -> None:
    if not pairs:
        return
    query = select(Submission).where(Submission.runpod_job_id.in_([r for _, r in pairs]))
    for submission in session.scalars(query):
        submission.outcome = outcome
