"""The API in the test process: its real lifespan over ASGI, on a fresh SQLite ledger.

Starlette's TestClient is not used: it warns (an error here) about its httpx dependency.
"""

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from app.core.config import get_settings
from app.jobs.engine import JobEngine
from app.simulator.server import SimulatorServer


@dataclass
class RunningApi:
    client: httpx.AsyncClient
    app: FastAPI
    engine: JobEngine


# `api_factory(**env)`: the API started with these settings (environment variable names).
ApiFactory = Callable[..., AbstractAsyncContextManager[RunningApi]]


def inprocess_api_factory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, simulator: SimulatorServer
) -> ApiFactory:
    """Starts the API on a ledger and folders in `tmp_path`, RunPod played by `simulator`."""

    @asynccontextmanager
    async def start(**env: str) -> AsyncIterator[RunningApi]:
        base = {
            "RUNPOD_URL": f"{simulator.base_url}/api-ep/run",
            "RUNPOD_API_KEY": "test-key",
            "DATABASE_URL": f"sqlite:///{tmp_path / 'api.db'}",
            "DATA_DIR": str(tmp_path / "data"),
            "MEDIA_DIR": str(tmp_path / "media"),
            "LOG_FILE": str(tmp_path / "logs" / "app.log"),
            "POLL_SWEEP_INTERVAL": "0.01",
            "MEDIA_URL_SECRET": "mediasec_test",
            "RUNPOD_POLL_INTERVAL": "0.1",
        }
        for name, value in {**base, **env}.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()
        from app.main import create_app

        application = create_app()
        transport = httpx.ASGITransport(app=application)
        try:
            async with (
                application.router.lifespan_context(application),
                httpx.AsyncClient(transport=transport, base_url="http://podrelay.test") as client,
            ):
                yield RunningApi(client=client, app=application, engine=application.state.engine)
        finally:
            get_settings.cache_clear()

    return start
