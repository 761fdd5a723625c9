"""The ledger on both backends for engine tests: a SQLite file, or the session's PostgreSQL
database emptied for each test; settings and job engines on it."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Protocol

from app.core.config import Settings
from app.core.db import Base, Database
from app.core.migrate import upgrade_database
from app.jobs.engine import JobEngine
from app.simulator.server import SimulatorServer


def empty_postgres_ledger(url: str) -> None:
    """Migrate the database at `url` and delete every row (the schema stays)."""
    database = Database(url)
    upgrade_database(database)
    with database.engine.begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            connection.execute(table.delete())
    database.dispose()


def engine_settings(
    simulator: SimulatorServer, database_url: str, tmp_path: Path, **overrides: Any
) -> Settings:
    values: dict[str, Any] = {
        "runpod_url": f"{simulator.base_url}/engine/run",
        "runpod_api_key": "test-key",
        "database_url": database_url,
        "data_dir": tmp_path / "data",
        "media_dir": tmp_path / "media",
        "log_file": None,
        "poll_sweep_interval": 0.01,
        "runpod_poll_interval": 0.1,
        "submit_retry_base": 0.05,
        "image_download_retry_base": 0.05,
        "runpod_max_retries": 2,
        **overrides,
    }
    return Settings(_env_file=None, **values)


class EngineFactory(Protocol):
    def __call__(self, **overrides: Any) -> JobEngine: ...


@asynccontextmanager
async def engine_factory(
    simulator: SimulatorServer, database_url: str, tmp_path: Path
) -> AsyncIterator[EngineFactory]:
    """Engines on one ledger, with `engine_settings` and its overrides; closed on exit."""
    engines: list[JobEngine] = []

    def make(**overrides: Any) -> JobEngine:
        settings = engine_settings(simulator, database_url, tmp_path, **overrides)
        engine = JobEngine.from_settings(settings)
        upgrade_database(engine.db)
        engines.append(engine)
        return engine

    try:
        yield make
    finally:
        for engine in engines:
            await engine.aclose()
            engine.db.dispose()
