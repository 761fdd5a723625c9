"""The Podrelay API application: `uvicorn app.main:app`."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware

from app import __version__
from app.accounts.callers import KeyLookup
from app.accounts.ratelimit import HEADER_NAMES, rate_limiter_from_settings
from app.api import examples, ops, webhooks
from app.api.deps import enforce_rate_limit
from app.api.endpoints import media, runpod_endpoints
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

# What a browser page may send, and read back, across origins.
CORS_REQUEST_HEADERS = (
    "Authorization",
    "X-API-Key",
    "Content-Type",
    "Idempotency-Key",
    "Prefer",
    "Last-Event-ID",
)
CORS_RESPONSE_HEADERS = ("Location", "Preference-Applied", "Retry-After", *HEADER_NAMES)


@asynccontextmanager
async def lifespan(application: FastAPI) -> AsyncIterator[None]:
    engine = JobEngine.from_settings(settings_or_exit())
    upgrade_database(engine.db)
    state = application.state
    state.engine = engine
    state.rate_limiter = rate_limiter_from_settings(engine.settings)
    state.keys = KeyLookup(engine.settings, engine.db)
    state.intake = Intake(engine.settings, engine.db)
    state.webhooks = WebhookReceiver(engine.db, engine.store)
    yield
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
    application.include_router(
        runpod_endpoints.router,
        prefix="/api/v1",
        dependencies=[Depends(enforce_rate_limit)],
        # The rate limit, and the ledger or broker being unreachable, on every route.
        responses=problem_responses(429, 503),
    )
    # Signed image URLs: no API key, no per-key rate limit.
    application.include_router(media.router)
    application.include_router(webhooks.router)
    application.include_router(playground.router)
    ops.install_operations(application, settings)  # /readyz, /metrics, body limits
    if settings.cors_origin_list:  # outermost, so every answer carries it
        application.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origin_list,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=list(CORS_REQUEST_HEADERS),
            expose_headers=list(CORS_RESPONSE_HEADERS),
            max_age=600,
        )

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
