"""Cancelling a job on the user's behalf."""

from sqlalchemy.orm import Session

from app.jobs.models import Job
from app.jobs.service import move, release
from app.jobs.status import JobStatus


class JobAlreadyFinished(Exception):
    """The job reached a final state before it could be cancelled."""

    def __init__(self, status: str) -> None:
        super().__init__(f"the job is already {status}")
        self.status = status


def cancel_job(session: Session, job: Job) -> str | None:
    """Mark the job cancelled; returns the RunPod job id to cancel there, if it has one.

    Cancelling a cancelled job again is a no-op; any other finished job raises.
    """
    status = JobStatus(job.status)
    if status is JobStatus.CANCELLED:
        return None
    if status.is_terminal:
        raise JobAlreadyFinished(status)
    move(session, job, JobStatus.CANCELLED, error_code="cancelled", message="cancelled by the user")
    release(job, next_check_at=None)
    return job.runpod_job_id
