"""Ledger rows for tests, recorded the way the product records them."""

from typing import Any

from sqlalchemy.orm import Session

from app.jobs import service
from app.jobs.models import Job
from app.jobs.service import NewJob
from app.services.generation_defaults import GenerationParams

SMALL = GenerationParams(width=256, height=256)


def add_job(
    session: Session,
    *,
    owner: str = "tester",
    prompt: str = "a red fox",
    params: GenerationParams = SMALL,
    timeout_s: float = 30.0,
    **fields: Any,
) -> Job:
    """A pending job recorded by `record_jobs`, as the session's ORM object."""
    new = NewJob(
        owner=owner,
        prompt=prompt,
        params=params.model_dump(mode="json"),
        timeout_s=timeout_s,
        **fields,
    )
    [recorded] = service.record_jobs(session, [new])
    return session.get_one(Job, recorded.job.id)
