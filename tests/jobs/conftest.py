"""Ledger fixtures on both backends: a SQLite file and a PostgreSQL database of its own."""

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from app.core.config import Settings
from app.core.db import Base, Database
from app.core.migrate import upgrade_database
from app.devstack import temporary_postgres_database
from app.jobs.engine import JobEngine
from app.simulator.server import SimulatorServer


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped at the end."""
    try:
        with temporary_postgres_database("podrelay_test") as url:
            yield url
    except psycopg.OperationalError as error:
        pytest.fail(f"PostgreSQL is required at 127.0.0.1:5432 ({error})")


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.db'}"
        return
    url: str = request.getfixturevalue("postgres_url")
    database = Database(url)
    upgrade_database(database)
    with database.engine.begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            connection.execute(table.delete())
    database.dispose()
    yield url


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


@pytest.fixture
async def engine(
    simulator: SimulatorServer, database_url: str, tmp_path: Path
) -> AsyncIterator[JobEngine]:
    job_engine = JobEngine.from_settings(engine_settings(simulator, database_url, tmp_path))
    upgrade_database(job_engine.db)
    yield job_engine
    await job_engine.aclose()
    job_engine.db.dispose()
