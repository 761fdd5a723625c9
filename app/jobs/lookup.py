"""Finding a job by any id a caller may hold."""

from sqlalchemy.orm import Session

from app.jobs.models import Job
from app.jobs.service import job_for_task


def find_job(session: Session, any_id: str) -> Job | None:
    """By job id, or by the Celery task id of a seed-style task that created it."""
    return session.get(Job, any_id) or job_for_task(session, any_id)
