"""The Podrelay API application: `uvicorn app.main:app`."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

from app import __version__
from app.accounts.credentials import Authenticator
from app.accounts.ratelimit import rate_limiter_from_settings
from app.api import examples, ops, webhooks
from app.api.cors import PublishableCORS
from app.api.deps import authorize
from app.api.endpoints import account, media, runpod_endpoints
from app.api.errors import install_error_handlers, problem_responses
from app.api.openapi_docs import (
    TAGS,
    add_components,
    json_example,
    keep_example_nulls,
    operation_id,
)
from app.api.schemas import JobEventOut
from app.core.config import settings_or_exit
from app.core.logging import configure_logging, redact_access_logs
from app.core.migrate import upgrade_database
from app.core.tracing import API_SERVICE, api_telemetry, configure_tracing
from app.jobs.engine import JobEngine
from app.jobs.intake import Intake
from app.jobs.webhooks import WebhookReceiver
from app.playground import router as playground
from app.services.runpod_client import close_client


@asynccontextmanager
async def lifespan(application: FastAPI) -> AsyncIterator[None]:
    engine = JobEngine.from_settings(settings_or_exit())
    upgrade_database(engine.db)
    state = application.state
    state.engine = engine
    state.rate_limiter = rate_limiter_from_settings(engine.settings)
    state.authenticator = Authenticator(engine.settings, engine.db)
    state.intake = Intake(engine.settings, engine.db)
    state.webhooks = WebhookReceiver(engine.db, engine.store)
    stop_metrics = ops.serve_metrics_port(engine.settings, engine.db)
    yield
    stop_metrics()
    await state.authenticator.aclose()
    await state.rate_limiter.aclose()
    await engine.aclose()
    await close_client()


def create_app() -> FastAPI:
    """Build the API; exits with one clear line when the configuration is invalid."""
    settings = settings_or_exit()
    configure_logging(settings)
    redact_access_logs()
    configure_tracing(settings, service=API_SERVICE)
    application = FastAPI(
        title="Podrelay",
        version=__version__,
        summary="A job gateway that relays text-to-image generation to RunPod Serverless.",
        lifespan=lifespan,
        openapi_tags=TAGS,
        generate_unique_id_function=operation_id,
        telemetry=api_telemetry(),
    )

    install_error_handlers(application)
    add_components(application, JobEventOut)
    keep_example_nulls(application)
    for router in (runpod_endpoints.router, account.router):
        application.include_router(
            router,
            prefix="/api/v1",
            # Each operation's scope and rate limit (`app.api.deps.ACCESS`).
            dependencies=[Depends(authorize)],
            # The rate limit, and the ledger or broker being unreachable, on every route.
            responses=problem_responses(429, 503),
        )
    # Signed image URLs: no API key, no per-key rate limit.
    application.include_router(media.router)
    application.include_router(webhooks.router)
    application.include_router(playground.router)
    ops.install_operations(application, settings)  # /readyz, /metrics, body limits
    # Outermost, so every answer carries it: CORS_ORIGINS and publishable keys' origins.
    application.add_middleware(PublishableCORS, origins=settings.cors_origin_list)

    @application.get(
        "/healthz",
        tags=["operations"],
        summary="Liveness probe",
        responses={200: json_example(examples.HEALTHZ)},
    )
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return application


app = create_app()
