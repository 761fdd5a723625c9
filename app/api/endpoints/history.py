"""The caller's history: jobs, batches, live events, stored images and usage."""

import asyncio
import re
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, RedirectResponse, Response
from fastapi.sse import EventSourceResponse, ServerSentEvent
from sqlalchemy import select

from app.api import examples
from app.api.deps import CallerDep, EngineDep, SessionDep
from app.api.errors import NotFound, problem_responses
from app.api.openapi_docs import schema_ref
from app.api.schemas import (
    NO_NUL,
    BatchOut,
    JobEventOut,
    JobPage,
    PathId,
    UsageDay,
    UsageOut,
)
from app.api.views import batch_out, job_out
from app.jobs.engine import JobEngine
from app.jobs.models import Batch, Job, JobEvent, JobImage
from app.jobs.status import JobStatus
from app.media.store import MediaError

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
    price = engine.settings.gpu_price_per_second
    return JobPage(
        items=[job_out(job, price_per_second=price) for job in jobs[:limit]],
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
    return batch_out(batch, price_per_second=engine.settings.gpu_price_per_second)


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
        finished = JobStatus(session.get_one(Job, job_id).status).is_terminal
        return [JobEventOut.model_validate(row, from_attributes=True) for row in rows], finished


@router.get(
    "/images/{image_id}",
    summary="A stored result image",
    tags=["jobs"],
    responses={
        **ERRORS,
        200: {
            "description": "The image's bytes, as stored; immutable, its `ETag` is its sha256.",
            "content": {"image/png": {}, "image/jpeg": {}, "image/webp": {}},
        },
        307: {"description": "Not stored yet: redirects to where RunPod's worker put it."},
    },
    response_class=FileResponse,
)
def get_image(
    image_id: PathId, caller: CallerDep, session: SessionDep, engine: EngineDep
) -> Response:
    image = session.get(JobImage, image_id)
    if image is None or image.job.owner != caller.owner:
        raise NotFound("no such image", code="image_not_found")
    if image.state == "pending" and image.source_url:
        # Still downloading: its origin (RunPod's or the worker's link) serves it meanwhile.
        no_store = {"Cache-Control": "no-store"}
        return RedirectResponse(image.source_url, status_code=307, headers=no_store)
    if image.state != "stored" or not image.storage_key:
        raise NotFound(f"the image is {image.state}, not stored", code="image_not_stored")
    try:
        path = engine.store.path(image.storage_key)
    except MediaError:
        raise NotFound("no such image", code="image_not_found") from None
    return FileResponse(
        path,
        media_type=image.mime_type,
        headers={
            "Cache-Control": "private, max-age=31536000, immutable",
            "ETag": f'"{image.sha256}"',
        },
    )


@router.get(
    "/usage",
    summary="The caller's jobs, images, GPU time and cost per day",
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
        day.images += sum(image.state == "stored" for image in job.images)
        day.gpu_seconds += (job.execution_ms or 0) / 1000
    for day in days.values():
        day.gpu_seconds = round(day.gpu_seconds, 3)
        day.estimated_usd = round(day.gpu_seconds * price, 6)
    return UsageOut(days=sorted(days.values(), key=lambda d: d.day), gpu_price_per_second=price)
