"""Shared fixtures: a real simulator under uvicorn on 127.0.0.1, and clients pointed at it."""

import os
from collections.abc import AsyncIterator, Iterator

import pytest

from app.core.config import get_settings
from app.runpod import RunPodClient
from app.simulator.config import SimulatorConfig
from app.simulator.server import SimulatorServer

# Test files that must be collected in a full run; CI fails loudly if one goes missing.
REQUIRED_TEST_MODULES = (
    "tests/test_config.py",
    "tests/runpod/test_client_errors.py",
    "tests/runpod/test_client_simulator.py",
    "tests/runpod/test_outputs.py",
    "tests/runpod/test_results.py",
    "tests/services/test_seed_demo.py",
    "tests/services/test_prompts.py",
    "tests/test_cli.py",
    "tests/cli/test_jobs.py",
    "tests/cli/test_dev.py",
    "tests/test_seed_commands.py",
    "tests/jobs/test_engine.py",
    "tests/jobs/test_webhooks.py",
    "tests/api/test_endpoints.py",
    "tests/api/test_limits_ops.py",
    "tests/api/test_schema_fuzz.py",
    "tests/api/test_openapi_examples.py",
    "tests/jobs/test_worker.py",
    "tests/notify/test_client_webhooks.py",
    "tests/simulator/test_lifecycle.py",
    "tests/simulator/test_faults.py",
    "tests/test_bench_smoke.py",
    "tests/test_docker.py",
    "tests/docs/test_readme.py",
    "tests/docs/test_integration_docs.py",
    "tests/docs/test_commands.py",
    "tests/e2e/test_playground.py",
    "tests/api/test_intake.py",
    "tests/api/test_dependencies_down.py",
    "tests/api/test_fast_generate.py",
    "tests/cli/test_worker_supervision.py",
    "tests/jobs/test_locks.py",
    "tests/jobs/test_migrations.py",
    "tests/jobs/test_clock_skew.py",
    "tests/test_batching.py",
    "tests/security/test_auth.py",
    "tests/security/test_tenancy.py",
    "tests/security/test_runpod_webhooks.py",
    "tests/security/test_ssrf.py",
    "tests/security/test_injection.py",
    "tests/security/test_bodies.py",
    "tests/security/test_raw_http.py",
    "tests/security/test_secrets_in_logs.py",
    "tests/chaos/test_chaos.py",
    "tests/chaos/test_report.py",
    "tests/clients/test_openapi_document.py",
    "tests/clients/test_python_sdk.py",
    "tests/clients/test_typescript_sdk.py",
)

FAST_SIMULATOR = SimulatorConfig(
    workers=16,
    job_duration_ms=60,
    job_duration_jitter_ms=20,
    random_seed=7,
    webhook_retry_delay_s=0.2,
)


def pytest_collection_finish(session: pytest.Session) -> None:
    if not os.environ.get("CI"):
        return
    collected = {item.nodeid.split("::", 1)[0] for item in session.items}
    missing = [module for module in REQUIRED_TEST_MODULES if module not in collected]
    if missing:
        pytest.exit(f"required test modules were not collected: {missing}", returncode=3)


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
