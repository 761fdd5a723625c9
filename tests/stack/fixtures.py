"""The fixtures several suites share, registered once by tests/conftest.py (`pytest_plugins`).

A suite's conftest.py may define a fixture of the same name; for its tests, that one wins.
"""

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest

from app.core.config import get_settings
from app.devstack import temporary_postgres_database
from app.runpod import RunPodClient
from app.simulator.config import SimulatorConfig
from app.simulator.server import SimulatorServer
from tests.stack.factory import StackFactory, stack_factory
from tests.stack.inprocess_api import ApiFactory, RunningApi, inprocess_api_factory
from tests.stack.ledger import EngineFactory, empty_postgres_ledger, engine_factory
from tests.stack.postgres_server import PostgresServer
from tests.stack.receiver import Receiver, serve_receiver

FAST_SIMULATOR = SimulatorConfig(
    workers=16,
    job_duration_ms=60,
    job_duration_jitter_ms=20,
    random_seed=7,
    webhook_retry_delay_s=0.2,
)

# The simulator, and clients pointed at it.


@pytest.fixture(scope="session")
def simulator_server() -> Iterator[SimulatorServer]:
    with SimulatorServer(FAST_SIMULATOR.model_copy(deep=True)) as server:
        yield server


@pytest.fixture
def simulator(simulator_server: SimulatorServer) -> Iterator[SimulatorServer]:
    """The shared simulator, with jobs, counters and knobs reset after each test."""
    yield simulator_server
    simulator_server.reset()


@pytest.fixture
async def runpod(simulator: SimulatorServer) -> AsyncIterator[RunPodClient]:
    async with RunPodClient(
        api_key="test-key",
        endpoint_id="test-ep",
        base_url=simulator.base_url,
        initial_retry_delay=0.01,
        max_retry_delay=0.05,
        timeout=5.0,
    ) as client:
        yield client


@pytest.fixture
def runpod_env(monkeypatch: pytest.MonkeyPatch, simulator: SimulatorServer) -> Iterator[None]:
    """Point the settings-driven seed functions at the test simulator."""
    monkeypatch.setenv("RUNPOD_URL", f"{simulator.base_url}/seed-ep/run")
    monkeypatch.setenv("RUNPOD_API_KEY", "test-key")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


# The API in the test process.


@pytest.fixture
def api_factory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, simulator: SimulatorServer
) -> ApiFactory:
    """Start the API with extra settings, e.g. `api_factory(ENVIRONMENT="production")`."""
    return inprocess_api_factory(monkeypatch, tmp_path, simulator)


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


# The ledger and job engines on it.


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped at the end."""
    try:
        with temporary_postgres_database("podrelay_test") as url:
            yield url
    except psycopg.OperationalError as error:
        pytest.fail(f"PostgreSQL is required at 127.0.0.1:5432 ({error})")


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The test's ledger: a SQLite file, or the session's PostgreSQL database, emptied."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    url: str = request.getfixturevalue("postgres_url")
    empty_postgres_ledger(url)
    return url


@pytest.fixture
async def make_engine(
    simulator: SimulatorServer, database_url: str, tmp_path: Path
) -> AsyncIterator[EngineFactory]:
    """`make_engine(**settings)`: job engines on this test's ledger, closed after the test."""
    async with engine_factory(simulator, database_url, tmp_path) as make:
        yield make


# Client webhooks.


@pytest.fixture(scope="session")
def receiver_server() -> Iterator[Receiver]:
    with serve_receiver() as receiver:
        yield receiver


@pytest.fixture
def receiver(receiver_server: Receiver) -> Iterator[Receiver]:
    receiver_server.reset()
    yield receiver_server
    receiver_server.reset()


# Whole deployments: processes, brokers, databases.


@pytest.fixture
def stacks(tmp_path: Path) -> Iterator[StackFactory]:
    """Builds the test's stacks; stops every process and drops every database afterwards."""
    with stack_factory(tmp_path) as factory:
        yield factory


@pytest.fixture
def private_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server of the test's own, which it may stop and start."""
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.close()
