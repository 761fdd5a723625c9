"""The caller's history: jobs, batches, live events, stored images and usage."""

import asyncio
import re
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, Response
from fastapi.sse import EventSourceResponse, ServerSentEvent
from sqlalchemy import select

from app.accounts.budgets import budget_states, job_estimate_usd
from app.api import examples
from app.api.account_schemas import BudgetOut
from app.api.deps import CallerDep, EngineDep, SessionDep
from app.api.endpoints.media import IMAGE_RESPONSES, Format, Width, image_response
from app.api.errors import problem_responses
from app.api.openapi_docs import schema_ref
from app.api.schemas import (
    BatchOut,
    EventImageOut,
    JobEventOut,
    JobOut,
    JobPage,
    PathId,
    UsageDay,
    UsageOut,
)
from app.api.views import batch_out, image_out, job_out
from app.core.errors import Conflict, NotFound
from app.jobs.engine import JobEngine
from app.jobs.images import OWNER_MAX_AGE, was_stored
from app.jobs.models import Batch, Job, JobEvent
from app.jobs.options import NO_NUL
from app.jobs.retention import JobNotFinished, JobNotFound, delete_job_media
from app.jobs.status import JobStatus

router = APIRouter()
ERRORS = problem_responses(401, 404, 422)
SSE_POLL_S = 0.5
SSE_RETRY_MS = 2000
SSE_MAX_S = 3600.0
# What each event's `data` is, for the OpenAPI document (FastAPI documents the frame only).
EVENT_ITEMS = {
    "itemSchema": {
        "properties": {
            "data": {
                "contentMediaType": "application/json",
                "contentSchema": schema_ref(JobEventOut),
            }
        },
        "required": ["data"],
    }
}
_EVENT_ID = re.compile(r"[0-9]{1,18}")


@router.get("/jobs", summary="The caller's jobs, newest first", responses=ERRORS, tags=["jobs"])
def list_jobs(
    caller: CallerDep,
    session: SessionDep,
    engine: EngineDep,
    status: JobStatus | None = None,
    batch_id: Annotated[str | None, Query(max_length=40, pattern=NO_NUL)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[
        str | None, Query(max_length=40, pattern=NO_NUL, description="`next_cursor`")
    ] = None,
) -> JobPage:
    query = select(Job).where(Job.owner == caller.owner)
    if status is not None:
        query = query.where(Job.status == status.value)
    if batch_id is not None:
        query = query.where(Job.batch_id == batch_id)
    if cursor is not None:
        # Ids sort with creation only by accident; the cursor is the last job's (time, id).
        anchor = session.get(Job, cursor)
        if anchor is None or anchor.owner != caller.owner:
            raise NotFound("unknown cursor", code="invalid_cursor")
        query = query.where(
            (Job.created_at < anchor.created_at)
            | ((Job.created_at == anchor.created_at) & (Job.id < anchor.id))
        )
    jobs = list(
        session.scalars(query.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit + 1))
    )
    price = engine.settings.price_of
    return JobPage(
        items=[job_out(job, price_per_second=price(job.route)) for job in jobs[:limit]],
        next_cursor=jobs[limit - 1].id if len(jobs) > limit else None,
    )


@router.get(
    "/batches/{batch_id}", summary="A batch and its jobs", responses=ERRORS, tags=["batches"]
)
def get_batch(
    batch_id: PathId, caller: CallerDep, session: SessionDep, engine: EngineDep
) -> BatchOut:
    batch = session.get(Batch, batch_id)
    if batch is None or batch.owner != caller.owner:
        raise NotFound("no such batch", code="batch_not_found")
    route = batch.jobs[0].route if batch.jobs else ""
    return batch_out(batch, price_per_second=engine.settings.price_of(route))


async def owned_job_id(job_id: PathId, caller: CallerDep, engine: EngineDep) -> str:
    """The id of the caller's job; 404 before a stream starts (after, no status can change)."""

    def owner() -> str | None:
        with engine.db.session() as session:
            job = session.get(Job, job_id)
            return None if job is None else job.owner

    if await run_in_threadpool(owner) != caller.owner:
        raise NotFound("no such job", code="job_not_found")
    return job_id


@router.get(
    "/jobs/{job_id}/events",
    summary="Live job events (Server-Sent Events)",
    tags=["jobs"],
    responses={
        **ERRORS,
        200: {
            "description": "An event stream: one `id`/`event`/`data` frame per job event.",
            "content": {"text/event-stream": {"example": examples.EVENT_STREAM}},
        },
    },
    openapi_extra={"responses": {"200": {"content": {"text/event-stream": EVENT_ITEMS}}}},
    response_class=EventSourceResponse,
)
async def job_events(
    job_id: Annotated[str, Depends(owned_job_id)],
    engine: EngineDep,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> AsyncIterator[ServerSentEvent]:
    """Every state change as an SSE event named after its kind, its `data` a `JobEventOut`;
    resumable with `Last-Event-ID`. The stream ends after the job's final event. FastAPI
    frames the events and sends a keep-alive comment after 15 s without one."""
    after = _resume_after(last_event_id)
    loop = asyncio.get_running_loop()
    started = loop.time()
    yield ServerSentEvent(retry=SSE_RETRY_MS)
    while loop.time() - started < SSE_MAX_S:
        events, finished = await run_in_threadpool(_events_after, engine, job_id, after)
        for event in events:
            after = event.id
            yield ServerSentEvent(data=event, event=event.kind, id=str(event.id))
        if finished and not events:
            return
        await asyncio.sleep(SSE_POLL_S)


def _resume_after(last_event_id: str | None) -> int:
    """The event id a reconnecting client last saw; 0 (replay all) when it is not one. Only
    ASCII digits, and few enough for a BIGINT: `int()` also takes "²" (and fails) or 5000
    digits (and fails), and SQLite cannot bind an integer past 64 bits."""
    if last_event_id and _EVENT_ID.fullmatch(last_event_id):
        return int(last_event_id)
    return 0


def _events_after(engine: JobEngine, job_id: str, after: int) -> tuple[list[JobEventOut], bool]:
    with engine.db.session() as session:
        rows = session.scalars(
            select(JobEvent)
            .where(JobEvent.job_id == job_id, JobEvent.id > after)
            .order_by(JobEvent.id)
        ).all()
        job = session.get_one(Job, job_id)
        events = [JobEventOut.model_validate(row, from_attributes=True) for row in rows]
        for event in events:
            if event.kind == "status" and event.status == JobStatus.COMPLETED:
                event.images = [
                    EventImageOut.model_validate(image_out(image), from_attributes=True)
                    for image in job.images
                ]
        return events, JobStatus(job.status).is_terminal


@router.get(
    "/images/{image_id}",
    summary="A stored result image, for its owner's API key",
    tags=["jobs"],
    responses={**problem_responses(401, 404, 410, 422, 503), **IMAGE_RESPONSES},
    response_class=FileResponse,
)
def get_image(
    image_id: PathId,
    caller: CallerDep,
    session: SessionDep,
    engine: EngineDep,
    w: Width = None,
    format: Format = None,
) -> Response:
    """Immutable: its `ETag` is its sha256. Deleted: 410 `image_deleted`."""
    return image_response(
        engine, session, image_id, owner=caller.owner, w=w, image_format=format,
        max_age=OWNER_MAX_AGE,
    )  # fmt: skip


@router.delete(
    "/jobs/{job_id}",
    summary="Delete a finished job's images (and, with `purge=prompt`, its prompt)",
    tags=["jobs"],
    responses={**problem_responses(401, 404, 409, 422)},
)
def delete_job(
    job_id: PathId,
    caller: CallerDep,
    engine: EngineDep,
    purge: Annotated[
        Literal["prompt"] | None, Query(description="`prompt`: blank its prompts too.")
    ] = None,
) -> JobOut:
    """Its image URLs answer 410 `image_deleted` from now on; the job, its timeline, usage
    and cost stay."""
    try:
        delete_job_media(engine, job_id, owner=caller.owner, purge_prompt=purge == "prompt")
    except JobNotFound:
        raise NotFound("no such job", code="job_not_found") from None
    except JobNotFinished:
        raise Conflict(
            "the job has not finished; cancel it first", code="job_not_finished"
        ) from None
    with engine.db.session() as session:
        job = session.get_one(Job, job_id)
        return job_out(job, price_per_second=engine.settings.price_of(job.route))


@router.get(
    "/usage",
    summary="The caller's jobs, images, GPU time and cost per day, and what its budgets leave",
    tags=["account"],
    responses=problem_responses(401, 422),
)
def usage(caller: CallerDep, session: SessionDep, engine: EngineDep) -> UsageOut:
    price = engine.settings.gpu_price_per_second
    days: dict[str, UsageDay] = defaultdict(
        lambda: UsageDay(day="", jobs=0, completed=0, images=0, gpu_seconds=0.0, estimated_usd=0.0)
    )
    for job in session.scalars(select(Job).where(Job.owner == caller.owner)):
        day = days[job.created_at.date().isoformat()]
        day.day = job.created_at.date().isoformat()
        day.jobs += 1
        day.completed += job.status == JobStatus.COMPLETED
        day.images += sum(was_stored(image) for image in job.images)
        day.gpu_seconds += (job.execution_ms or 0) / 1000
        day.estimated_usd += (job.execution_ms or 0) / 1000 * engine.settings.price_of(job.route)
    for day in days.values():
        day.gpu_seconds = round(day.gpu_seconds, 3)
        day.estimated_usd = round(day.estimated_usd, 6)
    return UsageOut(
        days=sorted(days.values(), key=lambda d: d.day),
        gpu_price_per_second=price,
        job_estimate_usd=round(
            job_estimate_usd(session, engine.settings, engine.catalogue.default), 6
        ),
        budgets=[
            BudgetOut.model_validate(state, from_attributes=True)
            for state in budget_states(session, engine.settings, caller)
        ],
    )
