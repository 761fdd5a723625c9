"""Hand a pending job to RunPod: POST /run once, and decide what to do when it fails.

A failure before RunPod saw the request is retried later from the database (3 attempts, backoff
from 60 s by default). After an ambiguous failure the job may already run at RunPod; each
attempt carries its own webhook token, so such an orphan is recognised when its webhook
arrives, and only one result is ever kept (see `app.jobs.webhooks`).
"""

import asyncio

from loguru import logger
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.batching import GroupRunner
from app.core.tracing import job_span
from app.jobs.answers import Answer, record_answers
from app.jobs.claims import Prepared, prepare
from app.jobs.engine import JobEngine
from app.jobs.ledger import write_patiently
from app.jobs.models import Job
from app.runpod import JobState, RunPodError
from app.runpod.client import deadline_policy
from app.scheduler.capacity import run_bucket

# Recording RunPod's answers is retried until this long before the lease ends.
RECORD_MARGIN_S = 10.0


async def submit_job(engine: JobEngine, job_id: str) -> None:
    """Submit the job if it still needs it; safe to call twice, even at the same time."""
    await submit_jobs(engine, [job_id])


async def submit_jobs(engine: JobEngine, job_ids: list[str]) -> int:
    """Submit these jobs now if they still need it, each to its route's first endpoint (the
    seed's tasks ask for their own; the dispatcher sends the queue's); returns how many were
    sent to RunPod."""
    sent = 0
    for route, ids in (await engine.db.run(_by_route, job_ids)).items():
        endpoint = engine.catalogue.routes[route].endpoints[0]
        prepared = await engine.db.run(prepare, engine.settings, endpoint, job_ids=ids)
        if prepared:
            bucket = run_bucket(engine.settings)
            await engine.allowance.acquire(endpoint.id, len(prepared), bucket)
            await send_prepared(engine, prepared)
        sent += len(prepared)
    return sent


def _by_route(session: Session, job_ids: list[str]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for job_id, route in session.execute(select(Job.id, Job.route).where(Job.id.in_(job_ids))):
        found.setdefault(route, []).append(job_id)
    return found


async def send_prepared(engine: JobEngine, prepared: list[Prepared]) -> None:
    """POST /run each prepared job, concurrently, and record each answer as soon as it arrives:
    until then a kill -9 loses its RunPod id, and the job would run twice at RunPod. Answers
    that arrive while one group is being recorded share the next transaction."""
    lease_ends = asyncio.get_running_loop().time() + engine.settings.submit_lease
    # RunPod's answers exist only here until recorded: wait out a database outage for them.

    async def record(answers: list[Answer]) -> list[str | None]:
        deadline = lease_ends - RECORD_MARGIN_S
        return await write_patiently(engine.db, deadline, record_answers, engine, answers)

    recorder: GroupRunner[Answer, str | None] = GroupRunner(record, parallel=1)

    async def submit(item: Prepared) -> None:
        with job_span("podrelay.submit", item.job_id, item.traceparent):
            duplicate = await recorder.run((item, await _send(engine, item)))
            if duplicate:
                await cancel_quietly(engine, duplicate, item.endpoint_id)

    outcomes = await asyncio.gather(*(submit(item) for item in prepared), return_exceptions=True)
    # Raised only once every answer had its chance to be recorded.
    for outcome in outcomes:
        if outcome is not None:
            raise outcome


async def _send(engine: JobEngine, item: Prepared) -> JobState | RunPodError:
    async with engine.runpod_slots:
        try:
            return await engine.client(item.endpoint_id).run(
                item.job_input,
                webhook=engine.webhook_url(item.token),
                policy=deadline_policy(item.remaining_s),
            )
        except RunPodError as error:
            return error


async def cancel_quietly(engine: JobEngine, runpod_job_id: str, endpoint_id: str | None) -> None:
    try:
        async with engine.runpod_slots:
            await engine.client(endpoint_id).cancel(runpod_job_id)
    except RunPodError as error:
        logger.warning("[RUNPOD TASK] could not cancel RunPod job {}: {}", runpod_job_id, error)
