"""`GET /models`: the routes a request may name as `model`, with their endpoints' live health."""

from fastapi import APIRouter

from app.api.deps import EngineDep, SessionDep
from app.api.errors import problem_responses
from app.api.model_schemas import ModelsOut, models_out
from app.scheduler.overview import route_overviews

router = APIRouter()


@router.get(
    "/models",
    summary="The models (routes) and their endpoints' health",
    responses=problem_responses(401, 403),
    tags=["jobs"],
)
def list_models(session: SessionDep, engine: EngineDep) -> ModelsOut:
    """Each route: its worker kind, price, parameter defaults and bounds, fallbacks, and its
    RunPod endpoints as the dispatchers last saw them (workers, queue, recent times, circuit).
    Any authenticated caller may read it."""
    return ModelsOut(models=models_out(route_overviews(session, engine.settings)))
