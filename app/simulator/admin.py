"""Unauthenticated routes: simulator administration and generated-image downloads."""

import asyncio
from enum import Enum
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from app.simulator import reports
from app.simulator.endpoints import KnobError, validation_details
from app.simulator.errors import ApiError, json_error
from app.simulator.images import render_png
from app.simulator.jobs import JobStatus
from app.simulator.state import Simulator

_ADMIN: list[str | Enum] = ["simulator admin"]


async def _knob_values(request: Request) -> dict[str, Any]:
    try:
        changes = await request.json()
    except ValueError as exc:
        raise ApiError(400, "body must be a JSON object of knob values") from exc
    if not isinstance(changes, dict):
        raise ApiError(400, "body must be a JSON object of knob values")
    return changes


def _invalid(error: str, details: list[dict[str, Any]]) -> Response:
    return JSONResponse({"error": error, "details": details}, status_code=400)


def _endpoint_routes(router: APIRouter, sim: Simulator) -> None:
    async def configure(endpoint_id: str, request: Request, *, replace: bool) -> Response:
        knobs = await _knob_values(request)
        try:
            sim.configure_endpoint(endpoint_id, knobs, replace=replace)
        except KnobError as exc:
            return _invalid("invalid endpoint knobs", exc.details)
        return JSONResponse(sim.endpoints.view(endpoint_id))

    @router.get("/_sim/endpoints", tags=_ADMIN)
    async def list_endpoints() -> Response:
        """Show every configured endpoint: its overrides and the knobs it runs with."""
        return JSONResponse({eid: sim.endpoints.view(eid) for eid in sim.endpoints.ids()})

    @router.get("/_sim/endpoints/{endpoint_id}", tags=_ADMIN)
    async def get_endpoint(endpoint_id: str) -> Response:
        """Show one endpoint (an unconfigured one runs with the global knobs)."""
        return JSONResponse(sim.endpoints.view(endpoint_id))

    @router.put("/_sim/endpoints/{endpoint_id}", tags=_ADMIN)
    async def put_endpoint(endpoint_id: str, request: Request) -> Response:
        """Configure an endpoint with exactly these overrides; the others follow the global."""
        return await configure(endpoint_id, request, replace=True)

    @router.patch("/_sim/endpoints/{endpoint_id}", tags=_ADMIN)
    async def patch_endpoint(endpoint_id: str, request: Request) -> Response:
        """Change some of an endpoint's overrides (configuring it if needed); null drops one."""
        return await configure(endpoint_id, request, replace=False)

    @router.delete("/_sim/endpoints/{endpoint_id}", tags=_ADMIN)
    async def delete_endpoint(endpoint_id: str) -> Response:
        """Drop an endpoint's overrides: it runs with the global knobs and the shared workers."""
        if not sim.delete_endpoint(endpoint_id):
            return json_error(404, "endpoint not configured")
        return JSONResponse(sim.endpoints.view(endpoint_id))


def admin_router(sim: Simulator) -> APIRouter:
    router = APIRouter()

    @router.get("/_sim/config", tags=_ADMIN)
    async def get_config() -> Response:
        """Show every knob."""
        return JSONResponse(sim.config.model_dump(mode="json"))

    @router.patch("/_sim/config", tags=_ADMIN)
    async def patch_config(request: Request) -> Response:
        """Change some knobs; the update is validated as a whole and applied atomically."""
        changes = await _knob_values(request)
        try:
            sim.update_config(changes)
        except ValidationError as exc:
            return _invalid("invalid config", validation_details(exc))
        return JSONResponse(sim.config.model_dump(mode="json"))

    _endpoint_routes(router, sim)

    @router.get("/_sim/counters", tags=_ADMIN)
    async def get_counters(endpoint: str | None = None) -> Response:
        """Show call, response, job, fingerprint and webhook counts: of every endpoint summed,
        or of the one given."""
        jobs = reports.jobs_by_status(sim.engine.jobs(endpoint))
        return JSONResponse(sim.counters.read(endpoint).as_dict(jobs))

    @router.get("/_sim/jobs", tags=_ADMIN)
    async def get_jobs(
        since: float = 0.0, status: JobStatus | None = None, endpoint: str | None = None
    ) -> Response:
        """Show when each job still kept finished (Unix time), if at `since` or later and, when
        `status` or `endpoint` is given, if it ended in that status or ran at that endpoint."""
        jobs = sim.engine.jobs(endpoint)
        return JSONResponse({"finished_at": reports.finish_times(jobs, since, status)})

    @router.get("/_sim/jobs/by-input", tags=_ADMIN)
    async def get_jobs_by_input(endpoint: str | None = None) -> Response:
        """Show the status of every job still kept (of `endpoint` when given), grouped by its
        input's fingerprint (the one `jobs_by_fingerprint` counts): two jobs in one group are
        one input run twice."""
        return JSONResponse(reports.statuses_by_input(sim.engine.jobs(endpoint)))

    @router.post("/_sim/reset", tags=_ADMIN)
    async def reset() -> Response:
        """Forget jobs and counters; restore the startup knobs and endpoints."""
        await sim.reset()
        return JSONResponse({"status": "reset"})

    @router.get("/images/{image_id}.png", tags=["images"])
    async def image(image_id: str) -> Response:
        """Serve a generated image, like a public bucket URL."""
        spec = sim.registry.get(image_id)
        if spec is None:
            return json_error(404, "image not found")
        png = await asyncio.to_thread(render_png, spec)
        return Response(png, media_type="image/png", headers={"Cache-Control": "max-age=604800"})

    return router
