"""An in-process API (its real lifespan, ASGI transport) on a fresh SQLite ledger.

Starlette's TestClient is not used: it warns (an error here) about its httpx dependency.
"""

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from app.core.config import get_settings
from app.devstack import temporary_postgres_database
from app.jobs.engine import JobEngine
from app.simulator.server import SimulatorServer


@dataclass
class RunningApi:
    client: httpx.AsyncClient
    app: FastAPI
    engine: JobEngine


ApiFactory = Callable[..., AbstractAsyncContextManager[RunningApi]]


@pytest.fixture
def api_factory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, simulator: SimulatorServer
) -> ApiFactory:
    """Start the API with extra settings, e.g. `api_factory(ENVIRONMENT="production")`."""

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


@pytest.fixture
async def api(api_factory: ApiFactory) -> AsyncIterator[RunningApi]:
    """Development defaults: anonymous callers allowed."""
    async with api_factory() as running:
        yield running


@pytest.fixture
async def api_strict(api_factory: ApiFactory) -> AsyncIterator[RunningApi]:
    """Production defaults: keys required, private webhook URLs refused, 2 active jobs per key."""
    async with api_factory(ENVIRONMENT="production", MAX_CONCURRENT_JOBS="2") as running:
        yield running


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_env(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """Settings for the ledger, for `api_factory`: its SQLite file, or a fresh PostgreSQL
    database."""
    if request.param == "sqlite":
        yield {}
        return
    with temporary_postgres_database("podrelay_api") as url:
        yield {"DATABASE_URL": url}


def rate_limit(response: httpx.Response) -> dict[str, int]:
    """The parameters of an answer's `RateLimit-Policy` and `RateLimit` fields: `q` (the
    limit), `w` (the window), `r` (requests remaining) and `t` (seconds until the reset)."""
    found: dict[str, int] = {}
    for name in ("RateLimit-Policy", "RateLimit"):
        item, *parameters = response.headers[name].split(";")
        assert item == '"default"', response.headers[name]
        found |= {key: int(value) for key, value in (p.split("=") for p in parameters)}
    return found
