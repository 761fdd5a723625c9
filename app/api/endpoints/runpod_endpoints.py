"""The seed's six endpoints under `/api/v1/runpod`, plus history, events, images and usage
(`app.api.endpoints.history`) and the models (`app.api.endpoints.models`), all on one router
that `app.main` mounts at `/api/v1`."""

import asyncio
import re
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Response
from fastapi.concurrency import run_in_threadpool
from loguru import logger
from pydantic import BaseModel
from sqlalchemy import func, select

from app.accounts.callers import Caller
from app.accounts.idempotency import request_fingerprint
from app.api import examples
from app.api.deps import CallerDep, EngineDep, IntakeDep, SessionDep, require_admin
from app.api.endpoints import history, models
from app.api.errors import problem_responses
from app.api.model_schemas import ModelOut, models_out
from app.api.openapi_docs import json_example
from app.api.schemas import (
    BatchOut,
    BatchRequest,
    ConnectionTestOut,
    GenerateRequest,
    JobOut,
    PathId,
    QueueStatsOut,
)
from app.api.views import (
    batch_out,
    batch_path,
    job_out,
    recorded_batch_out,
    recorded_job_out,
)
from app.core.errors import Conflict, NotFound
from app.jobs.admission import IdempotencyKey
from app.jobs.cancel import JobAlreadyFinished, cancel_job
from app.jobs.connection import check_connection
from app.jobs.engine import JobEngine
from app.jobs.handoff import send_task
from app.jobs.lookup import find_job
from app.jobs.models import Batch, Job
from app.jobs.status import JobStatus
from app.runpod import RunPodError
from app.scheduler.overview import route_overviews
from app.scheduler.queue import place_of

router = APIRouter(prefix="/runpod")
router.include_router(history.router)
router.include_router(models.router)

# What each route can answer besides success (all `application/problem+json`, see errors.py).
# 429 is on every route (the rate limit, see app.main); 408 and 413 are the body limits.
SUBMIT_ERRORS = {
    **problem_responses(400, 401, 402, 403, 408, 409, 413, 422, 429),
    200: {"model": JobOut, "description": "The job ended within `Prefer: wait=N`."},
    202: json_example(examples.PENDING_JOB, "Accepted; poll `links.status`."),
}
BATCH_ERRORS = {
    **problem_responses(400, 401, 402, 403, 408, 409, 413, 422, 429),
    202: json_example(examples.ACCEPTED_BATCH, "Accepted, one job per prompt."),
}
JOB_ERRORS = problem_responses(401, 404, 422)
CANCEL_ERRORS = {
    **problem_responses(401, 404, 409, 422),
    200: json_example(examples.CANCELLED_JOB, "Cancelled (or already cancelled)."),
}
ADMIN_ERRORS = problem_responses(401, 403, 422)
MAX_WAIT_S = 60
_PREFER_WAIT = re.compile(r"(?:^|[,;\s])wait=(\d+)")
IdempotencyKeyHeader = Annotated[str | None, Header(max_length=255, alias="Idempotency-Key")]
Prefer = Annotated[str | None, Header(description="`wait=N` (N <= 60) waits for the result.")]


def _job_view(engine: JobEngine, job_id: str, *, replayed: bool = False) -> JobOut:
    with engine.db.session() as session:
        job = session.get_one(Job, job_id)
        return job_out(
            job,
            price_per_second=engine.settings.price_of(job.route),
            place=place_of(session, job),
            replayed=replayed,
        )


def _batch_view(engine: JobEngine, batch_id: str) -> BatchOut:
    with engine.db.session() as session:
        batch = session.get_one(Batch, batch_id)
        price = engine.settings.price_of(batch.jobs[0].route if batch.jobs else "")
        return batch_out(batch, price_per_second=price, replayed=True)


def _idempotency(route: str, body: BaseModel, key: str | None) -> IdempotencyKey | None:
    if key is None:
        return None
    return IdempotencyKey(key, request_fingerprint(route, body.model_dump(mode="json")))


@router.post(
    "/generate",
    status_code=202,
    summary="Start a generation",
    responses=SUBMIT_ERRORS,
    tags=["jobs"],
)
async def generate(
    body: GenerateRequest,
    caller: CallerDep,
    engine: EngineDep,
    intake: IntakeDep,
    response: Response,
    idempotency_key: IdempotencyKeyHeader = None,
    prefer: Prefer = None,
) -> JobOut:
    """Accept a prompt; answers 202 with the job and its status URL. With `Prefer: wait=N`,
    answers 200 with the finished job if it ends within N seconds."""
    accepted = await intake.accept(
        caller, [body.prompt], body, idempotency=_idempotency("generate", body, idempotency_key)
    )
    if accepted.replayed:
        view = await run_in_threadpool(_job_view, engine, accepted.resource_id, replayed=True)
    else:
        view = recorded_job_out(accepted.jobs[0])
    wait = _wait_seconds(prefer)
    if wait and not view.status.is_terminal:
        view = await _wait_for(engine, view.id, wait, replayed=view.replayed)
    response.headers["Location"] = view.links.status
    if wait:
        response.headers["Preference-Applied"] = f"wait={wait}"
    if view.status.is_terminal and wait:
        response.status_code = 200
    return view


@router.post(
    "/generate/batch",
    status_code=202,
    summary="Start up to 10 generations",
    responses=BATCH_ERRORS,
    tags=["batches"],
)
async def generate_batch(
    body: BatchRequest,
    caller: CallerDep,
    engine: EngineDep,
    intake: IntakeDep,
    response: Response,
    idempotency_key: IdempotencyKeyHeader = None,
) -> BatchOut:
    """One batch, one job per prompt, all submitted to RunPod concurrently."""
    accepted = await intake.accept(
        caller,
        body.prompts,
        body,
        batch=True,
        idempotency=_idempotency("batch", body, idempotency_key),
    )
    if accepted.replayed:
        view = await run_in_threadpool(_batch_view, engine, accepted.resource_id)
    else:
        view = recorded_batch_out(accepted.resource_id, accepted.jobs)
    response.headers["Location"] = batch_path(view.id)
    return view


@router.get(
    "/status/{task_id}", summary="A job's status and result", responses=JOB_ERRORS, tags=["jobs"]
)
def status(task_id: PathId, caller: CallerDep, session: SessionDep, engine: EngineDep) -> JobOut:
    """Accepts the job id, or the Celery task id a seed-style task returned."""
    job = _owned_job(session, caller, task_id)
    price = engine.settings.price_of(job.route)
    return job_out(job, price_per_second=price, place=place_of(session, job))


@router.delete("/cancel/{task_id}", summary="Cancel a job", responses=CANCEL_ERRORS, tags=["jobs"])
def cancel(task_id: PathId, caller: CallerDep, engine: EngineDep) -> JobOut:
    """Cancels the job, at RunPod too; 409 when it already finished."""
    with engine.db.session() as session:
        job = _owned_job(session, caller, task_id)
        try:
            runpod_job_id, endpoint = cancel_job(session, job), job.endpoint
        except JobAlreadyFinished as error:
            raise Conflict(f"the job already ended: {error.status}", code="job_finished") from None
        job_id = job.id
    if runpod_job_id:
        try:
            send_task("cancel_runpod_job_task", runpod_job_id, endpoint)
        except Exception as error:  # noqa: BLE001 - RunPod's deadline policy stops it anyway
            logger.warning("could not enqueue the RunPod cancel of {}: {}", runpod_job_id, error)
    return _job_view(engine, job_id)


@router.post(
    "/test",
    summary="Test the RunPod connection",
    responses=ADMIN_ERRORS,
    tags=["admin"],
    dependencies=[Depends(require_admin)],
)
async def test_connection(engine: EngineDep) -> ConnectionTestOut:
    """Is the key accepted, what do the endpoint's workers do, and the round-trip time."""
    return ConnectionTestOut.model_validate(await check_connection(engine.runpod))


@router.get(
    "/queue/stats",
    summary="Queue statistics",
    responses=ADMIN_ERRORS,
    tags=["admin"],
    dependencies=[Depends(require_admin)],
)
async def queue_stats(engine: EngineDep) -> QueueStatsOut:
    """Podrelay's jobs by status, RunPod's /health, and why jobs wait, when they do; `routes`:
    each route's jobs and its endpoints' health, as `GET /models` shows them."""

    def counts() -> tuple[dict[str, int], list[ModelOut]]:
        with engine.db.session() as session:
            rows = session.execute(select(Job.status, func.count()).group_by(Job.status)).all()
            by_status = {status.value: 0 for status in JobStatus} | {r[0]: r[1] for r in rows}
            return by_status, models_out(route_overviews(session, engine.settings))

    by_status, routes = await run_in_threadpool(counts)
    health, error = None, None
    try:
        report = await engine.runpod.health()
        health = {"jobs": report.jobs, "workers": report.workers}
    except RunPodError as failure:
        error = failure.message
    waiting = by_status[JobStatus.PENDING] + by_status[JobStatus.QUEUED]
    return QueueStatsOut(
        jobs_by_status=by_status,
        queues={"waiting": waiting, "running": by_status[JobStatus.RUNNING]},
        runpod_health=health,
        runpod_error=error,
        stall_reason=_stall_reason(waiting, health, error),
        routes=routes,
    )


def _stall_reason(
    waiting: int, health: dict[str, dict[str, int]] | None, error: str | None
) -> str | None:
    if not waiting:
        return None
    if error is not None:
        return "runpod_unreachable"
    workers = (health or {}).get("workers", {})
    if workers.get("throttled", 0) and not workers.get("running", 0):
        return "workers_throttled"
    if not any(workers.get(state, 0) for state in ("idle", "ready", "running", "initializing")):
        return "no_workers"
    return None


def _owned_job(session: SessionDep, caller: Caller, task_id: str) -> Job:
    job = find_job(session, task_id)
    if job is None or job.owner != caller.owner:
        raise NotFound("no such job", code="job_not_found")
    return job


def _wait_seconds(prefer: str | None) -> int:
    match = _PREFER_WAIT.search(prefer or "")
    return min(MAX_WAIT_S, int(match.group(1))) if match else 0


async def _wait_for(engine: JobEngine, job_id: str, seconds: int, *, replayed: bool) -> JobOut:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        view = await run_in_threadpool(_job_view, engine, job_id, replayed=replayed)
        if view.status.is_terminal or loop.time() >= deadline:
            return view
        await asyncio.sleep(0.25)
