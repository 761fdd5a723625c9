"""The Podrelay API application: `uvicorn app.main:app`."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app import __version__
from app.core.config import settings_or_exit
from app.core.logging import configure_logging
from app.services.runpod_client import close_client


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    yield
    await close_client()


def create_app() -> FastAPI:
    """Build the API; exits with one clear line when the configuration is invalid."""
    settings = settings_or_exit()
    configure_logging(settings)
    application = FastAPI(
        title="Podrelay",
        version=__version__,
        summary="A job gateway that relays text-to-image generation to RunPod Serverless.",
        lifespan=lifespan,
    )

    @application.get("/healthz", tags=["operations"], summary="Liveness probe")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return application


app = create_app()
