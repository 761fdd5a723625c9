"""FastAPI app of the simulator: the hosted `/v2/{endpoint_id}/...` routes (contract 1.2).

Status objects, waits and lifecycle live in the engine; this module only maps HTTP onto it.
Admin routes (`/_sim/...`) and image downloads (`/images/...`) are in `admin.py`.
"""

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.requests import ClientDisconnect

from app.simulator.admin import admin_router
from app.simulator.config import SimulatorConfig
from app.simulator.envelope import parse_envelope, parse_wait
from app.simulator.errors import ApiError, job_not_found, json_error
from app.simulator.gate import Gate
from app.simulator.jobs import Job, JobStatus
from app.simulator.state import Simulator

Handler = TypeVar("Handler", bound=Callable[..., Any])


def _job_router(sim: Simulator) -> APIRouter:
    router = APIRouter(tags=["RunPod serverless"])
    engine, config = sim.engine, sim.config

    def get_and_post(path: str) -> Callable[[Handler], Handler]:
        # One route per method, so OpenAPI operation ids stay unique.
        def register(handler: Handler) -> Handler:
            for method in ("GET", "POST"):
                operation_id = f"{handler.__name__}_{method.lower()}"
                router.add_api_route(path, handler, methods=[method], operation_id=operation_id)
            return handler

        return register

    def lookup(endpoint_id: str, job_id: str) -> Job:
        job = engine.get(endpoint_id, job_id)
        if job is None:
            raise ApiError(404, "job not found")
        return job

    async def submit(endpoint_id: str, request: Request, *, sync: bool) -> Job:
        limit = config.max_body_runsync_bytes if sync else config.max_body_run_bytes
        envelope = parse_envelope(await request.body(), limit=limit, config=config)
        return engine.submit(endpoint_id, envelope, sync=sync, base_url=sim.public_base(request))

    async def settled(job: Job, wait_s: float) -> Response:
        if not await engine.wait(job, wait_s):
            return job_not_found()
        return JSONResponse(engine.snapshot(job))

    @router.post("/run")
    async def run(endpoint_id: str, request: Request) -> Response:
        """Queue a job; answer with its id."""
        job = await submit(endpoint_id, request, sync=False)
        lost = await sim.faults.lost_response(sim.knobs(endpoint_id))
        return lost or JSONResponse({"id": job.id, "status": JobStatus.IN_QUEUE.value})

    @router.post("/runsync")
    async def runsync(endpoint_id: str, request: Request) -> Response:
        """Queue a job and hold the request until it ends or `?wait` ms pass."""
        wait_s = parse_wait(request.query_params.get("wait"), config)
        job = await submit(endpoint_id, request, sync=True)
        lost = await sim.faults.lost_response(sim.knobs(endpoint_id))
        return lost or await settled(job, wait_s)

    @get_and_post("/status/{job_id}")
    async def status(endpoint_id: str, job_id: str) -> Response:
        """Return the job's status object."""
        return JSONResponse(engine.snapshot(lookup(endpoint_id, job_id)))

    @get_and_post("/status-sync/{job_id}")
    async def status_sync(endpoint_id: str, job_id: str, request: Request) -> Response:
        """Long-poll: return once the job ends or `?wait` ms pass."""
        wait_s = parse_wait(request.query_params.get("wait"), config)
        return await settled(lookup(endpoint_id, job_id), wait_s)

    @get_and_post("/stream/{job_id}")
    async def stream(endpoint_id: str, job_id: str) -> Response:
        """Return progress chunks not read before."""
        return JSONResponse(engine.stream(lookup(endpoint_id, job_id)))

    @router.post("/cancel/{job_id}")
    async def cancel(endpoint_id: str, job_id: str) -> Response:
        """Cancel a queued or running job (it answers CANCELLED, and so does its status from then
        on); a finished job is left as it is."""
        job = lookup(endpoint_id, job_id)
        if job.terminal:
            return JSONResponse(engine.snapshot(job))
        engine.cancel(job)
        return JSONResponse({"id": job.id, "status": job.status.value})

    @router.post("/retry/{job_id}")
    async def retry(endpoint_id: str, job_id: str) -> Response:
        """Requeue a FAILED or TIMED_OUT job under the same id."""
        job = lookup(endpoint_id, job_id)
        if not engine.retry(job):
            raise ApiError(400, f"only FAILED or TIMED_OUT jobs can be retried, not {job.status}")
        # A free worker may already hold the job, but the answer reports the requeue itself.
        return JSONResponse({"id": job.id, "status": JobStatus.IN_QUEUE.value})

    @router.post("/purge-queue")
    async def purge_queue(endpoint_id: str) -> Response:
        """Delete every queued (not running) job of the endpoint."""
        return JSONResponse({"removed": engine.purge(endpoint_id), "status": "completed"})

    @router.get("/health")
    async def health(endpoint_id: str) -> Response:
        """Count the endpoint's jobs by state and the pool's workers by state."""
        return JSONResponse(engine.health(endpoint_id))

    return router


async def _api_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return json_error(exc.status_code, exc.message)


async def _client_gone(_: Request, __: Exception) -> Response:
    # Nobody reads this answer; the nginx-style 499 only shows up in the response counters.
    return Response(status_code=499)


def create_app(
    config: SimulatorConfig | None = None, endpoints: Mapping[str, Mapping[str, Any]] | None = None
) -> FastAPI:
    """Build the simulator app; `config` stays live, so mutating it changes behaviour.

    `endpoints` configures endpoints at startup, each id with its overrides of the knobs in
    `config.ENDPOINT_KNOBS`; `/_sim/reset` returns to them. Raises `endpoints.KnobError` if
    one is invalid.
    """
    sim = Simulator(config if config is not None else SimulatorConfig(), endpoints)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await sim.start()
        try:
            yield
        finally:
            await sim.stop()

    app = FastAPI(title="Podrelay RunPod Serverless simulator", lifespan=lifespan)
    app.state.sim = sim
    app.add_middleware(Gate, sim=sim)
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(ClientDisconnect, _client_gone)
    app.include_router(_job_router(sim), prefix="/v2/{endpoint_id}")
    app.include_router(admin_router(sim))
    return app
