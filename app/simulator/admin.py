"""Unauthenticated routes: simulator administration and generated-image downloads."""

import asyncio
import json

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from app.simulator.errors import ApiError, json_error
from app.simulator.images import render_png
from app.simulator.jobs import JobStatus
from app.simulator.state import Simulator


def admin_router(sim: Simulator) -> APIRouter:
    router = APIRouter()

    @router.get("/_sim/config", tags=["simulator admin"])
    async def get_config() -> Response:
        """Show every knob."""
        return JSONResponse(sim.config.model_dump(mode="json"))

    @router.patch("/_sim/config", tags=["simulator admin"])
    async def patch_config(request: Request) -> Response:
        """Change some knobs; the update is validated as a whole and applied atomically."""
        try:
            changes = await request.json()
        except ValueError as exc:
            raise ApiError(400, "body must be a JSON object of knob values") from exc
        if not isinstance(changes, dict):
            raise ApiError(400, "body must be a JSON object of knob values")
        try:
            sim.update_config(changes)
        except ValidationError as exc:
            details = json.loads(exc.json(include_url=False, include_context=False))
            return JSONResponse({"error": "invalid config", "details": details}, status_code=400)
        return JSONResponse(sim.config.model_dump(mode="json"))

    @router.get("/_sim/counters", tags=["simulator admin"])
    async def get_counters() -> Response:
        """Show call, response, job, fingerprint and webhook counts."""
        return JSONResponse(sim.counters.as_dict(sim.engine.jobs_by_status()))

    @router.get("/_sim/jobs", tags=["simulator admin"])
    async def get_jobs(since: float = 0.0, status: JobStatus | None = None) -> Response:
        """Show when each job still kept finished (Unix time), if at `since` or later and, when
        `status` is given, if it ended in that status."""
        return JSONResponse({"finished_at": sim.engine.finish_times(since, status)})

    @router.get("/_sim/jobs/by-input", tags=["simulator admin"])
    async def get_jobs_by_input() -> Response:
        """Show the status of every job still kept, grouped by its input's fingerprint (the
        one `jobs_by_fingerprint` counts): two jobs in one group are one input run twice."""
        return JSONResponse(sim.engine.statuses_by_input())

    @router.post("/_sim/reset", tags=["simulator admin"])
    async def reset() -> Response:
        """Forget jobs and counters and restore the startup knobs."""
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
