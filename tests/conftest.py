"""The whole suite's rules: the fixtures every suite may use (tests/stack/fixtures.py), and
the test modules a full run must collect."""

import os

import pytest

pytest_plugins = ["tests.stack.fixtures"]

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
    "tests/cli/test_models.py",
    "tests/test_seed_commands.py",
    "tests/jobs/test_engine.py",
    "tests/jobs/test_failover.py",
    "tests/jobs/test_webhooks.py",
    "tests/api/test_endpoints.py",
    "tests/api/test_limits_ops.py",
    "tests/api/test_schema_fuzz.py",
    "tests/api/test_openapi_examples.py",
    "tests/jobs/test_worker.py",
    "tests/notify/test_client_webhooks.py",
    "tests/simulator/test_lifecycle.py",
    "tests/simulator/test_faults.py",
    "tests/simulator/test_endpoints.py",
    "tests/simulator/test_startup_endpoints.py",
    "tests/test_bench_smoke.py",
    "tests/test_docker.py",
    "tests/docker/test_stack.py",
    "tests/api/test_dashboard.py",
    "tests/docs/test_readme.py",
    "tests/docs/test_integration_docs.py",
    "tests/docs/test_commands.py",
    "tests/e2e/test_playground.py",
    "tests/api/test_intake.py",
    "tests/api/test_dependencies_down.py",
    "tests/api/test_submission_variants.py",
    "tests/docs/test_architecture.py",
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
    "tests/api/test_images.py",
    "tests/media/test_store.py",
    "tests/media/test_multihost.py",
    "tests/media/test_worker_bucket.py",
    "tests/clients/test_openapi_document.py",
    "tests/clients/test_python_sdk.py",
    "tests/clients/test_typescript_sdk.py",
    "tests/tracing/test_tracing.py",
    "tests/security/test_jwt.py",
    "tests/security/test_scopes.py",
    "tests/security/test_budgets.py",
    "tests/api/test_fair_limits.py",
    "tests/api/test_budgets.py",
    "tests/api/test_models.py",
)


def pytest_collection_finish(session: pytest.Session) -> None:
    if not os.environ.get("CI"):
        return
    collected = {item.nodeid.split("::", 1)[0] for item in session.items}
    missing = [module for module in REQUIRED_TEST_MODULES if module not in collected]
    if missing:
        pytest.exit(f"required test modules were not collected: {missing}", returncode=3)
