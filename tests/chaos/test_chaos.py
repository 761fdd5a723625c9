"""Chaos scenarios: two workers and two APIs on one PostgreSQL and one Redis, jobs submitted
over HTTP, and one fault injected mid-run. Every scenario must end with every accepted job
terminal, none run twice at RunPod, none stuck: 0 lost, 0 duplicated, 0 stuck.

`PODRELAY_CHAOS_JOBS` sets the jobs per scenario: a few dozen in `make test`, 500 in
`make chaos`, which also collects each scenario's numbers into docs/RELIABILITY.md.
"""

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from app.simulator.config import SimulatorConfig
from bench.stack import write_routes
from tests.chaos import faults
from tests.chaos.cluster import CLUSTER_SETTINGS, Cluster
from tests.chaos.faults import Context
from tests.chaos.outcome import (
    Outcome,
    assess,
    completed_by_endpoint,
    record,
    trickle_waits,
    wait_recovered,
    wait_runpod_idle,
)
from tests.media.s3_server import S3Server, running_s3_server, with_test_credentials
from tests.stack.factory import StackFactory
from tests.stack.postgres_server import PostgresServer
from tests.stack.waiting import wait_until

JOBS = int(os.environ.get("PODRELAY_CHAOS_JOBS", "40"))
# Generous: seconds per job on a shared 2-core machine, plus a fixed part for the fault.
SUBMIT_TIMEOUT_S = 120 + JOBS * 1.0
RECOVERY_WINDOW_S = 240 + JOBS * 0.5


@dataclass(frozen=True)
class Scenario:
    name: str
    fault: Callable[[Context], None]
    webhooks: bool = False
    private_postgres: bool = False
    skew: str | None = None  # worker-b's clock offset, for libfaketime
    # The share of the jobs accepted before the fault starts.
    fault_at: float = 0.5
    # Whether the fault can make orphans: RunPod jobs whose /run answer never got recorded.
    orphans: bool = False
    # Whether every job must complete: only injected job failures may end one otherwise.
    all_complete: bool = True
    # Settings over CLUSTER_SETTINGS for this scenario's stack.
    settings: tuple[tuple[str, float], ...] = ()
    # Images in an S3 bucket (a private moto server) instead of a shared folder.
    object_store: bool = False
    # Several API keys: one floods, three trickle; the trickling keys' waits are reported.
    tenants: bool = False
    # A route of these simulator endpoints (ROUTES_FILE) instead of the one RUNPOD_URL names.
    endpoints: tuple[str, ...] = ()


# Without RunPod faults a live worker's POST /run takes milliseconds, so a killed worker's
# submissions can come back after 15 s (a lease must stay above RECORD_MARGIN_S, 10 s).
_QUICK_SUBMIT_LEASE = (("submit_lease", 15.0),)
SCENARIOS = [
    Scenario("worker-kill-9", faults.kill_worker, orphans=True, settings=_QUICK_SUBMIT_LEASE),
    Scenario(
        "worker-kill-9-webhooks",
        faults.kill_worker,
        webhooks=True,
        orphans=True,
        settings=_QUICK_SUBMIT_LEASE,
    ),
    Scenario("redis-restart", faults.restart_redis),
    Scenario("postgres-restart", faults.restart_postgres, private_postgres=True),
    Scenario(
        "simulator-fault-storm",
        faults.fault_storm,
        webhooks=True,
        all_complete=False,
        fault_at=0,
        orphans=True,
    ),
    Scenario("lost-runpod-webhooks", faults.drop_webhooks, webhooks=True, fault_at=0.2),
    Scenario("clock-skew-ahead-60s", faults.skewed_clock, skew="+60s"),
    Scenario("clock-skew-behind-60s", faults.skewed_clock, skew="-60s"),
    Scenario("object-store-outage", faults.object_store_outage, object_store=True),
    Scenario(
        "tenant-flood",
        faults.kill_worker,
        orphans=True,
        tenants=True,
        settings=_QUICK_SUBMIT_LEASE,
    ),
    Scenario("endpoint-outage", faults.endpoint_outage, endpoints=faults.OUTAGE_ENDPOINTS),
]


# RunPod with 32 workers and jobs of 0.5 to 2.5 s: about 16 jobs/s, about what the two APIs
# accept on a shared 2-core machine, so jobs are still running when the fault hits.
RUNPOD = SimulatorConfig(
    workers=32,
    job_duration_ms=1500,
    job_duration_jitter_ms=1000,
    random_seed=23,
    webhook_retry_delay_s=0.5,
)


def describe(scenario: Scenario) -> str:
    text = " ".join((scenario.fault.__doc__ or "").split())
    if scenario.tenants:
        text = (
            "One API key floods three quarters of the jobs at once while three keys trickle "
            f"the rest in, one at a time; then: {text[0].lower()}{text[1:]}"
        )
    return f"{text} Skew: {scenario.skew}." if scenario.skew else text


@pytest.fixture
def object_store(tmp_path: Path) -> Iterator[S3Server]:
    with running_s3_server(tmp_path / "s3") as server:
        yield server


def build_cluster(
    stacks: StackFactory,
    scenario: Scenario,
    postgres: PostgresServer | None,
    object_store: S3Server | None = None,
) -> Cluster:
    redis_server = stacks.redis()
    simulator = stacks.simulator(RUNPOD.model_copy(deep=True))
    extra: dict[str, Any] = {}
    if postgres is not None:
        extra["postgres_admin_url"] = postgres.admin_url
    if object_store is not None:
        extra |= object_store.settings(object_store.new_bucket())
    for endpoint_id in scenario.endpoints:  # RUNPOD's workers, shared out
        simulator.set_endpoint(endpoint_id, workers=RUNPOD.workers // len(scenario.endpoints))
    if scenario.endpoints:
        routes = stacks.folder / f"routes-{scenario.name}.toml"
        extra["routes_file"] = write_routes(routes, simulator.base_url, scenario.endpoints)
    stack = stacks.build(
        ledger="postgresql",
        broker="redis",
        redis_server=redis_server,
        simulator=simulator,
        webhooks=scenario.webhooks,
        **extra,
        **{**CLUSTER_SETTINGS, **dict(scenario.settings)},
    )
    if object_store is not None:
        stack.env = with_test_credentials(stack.env)
    cluster = Cluster(stack, redis_server)
    skewed = {"worker-b": faults.faketime_env(scenario.skew)} if scenario.skew else {}
    cluster.start(worker_env=skewed)
    return cluster


@pytest.mark.timeout(int(SUBMIT_TIMEOUT_S + RECOVERY_WINDOW_S + 300))
@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_scenario_loses_duplicates_and_strands_nothing(
    scenario: Scenario, request: pytest.FixtureRequest
) -> None:
    postgres: PostgresServer | None = None
    if scenario.private_postgres:  # first, so that it stops after the stack's processes
        postgres = request.getfixturevalue("private_postgres")
    object_store: S3Server | None = None
    if scenario.object_store:
        object_store = request.getfixturevalue("object_store")
    stacks: StackFactory = request.getfixturevalue("stacks")
    cluster = build_cluster(stacks, scenario, postgres, object_store)
    try:
        outcome = run_scenario(cluster, scenario, postgres, object_store)
    finally:
        cluster.stop_supervising()  # before the stack stops its processes
    record(outcome)
    print(f"\nchaos: {outcome.summary()}")
    restarts = [f"supervisor restarts: {cluster.restarts}"] if cluster.restarts else []
    report = "\n".join([outcome.summary(), *outcome.details, *restarts, cluster.stack.tail(15)])
    assert outcome.submitted == JOBS, report
    assert (outcome.lost, outcome.duplicated, outcome.stuck) == (0, 0, 0), report
    assert outcome.recovery_s is not None, report
    if not scenario.orphans:
        assert not outcome.orphans, report
    if scenario.all_complete:
        assert outcome.statuses == {"completed": JOBS}, report
    if scenario.object_store:  # every image stored, in the bucket
        images = [image for job in cluster.stack.jobs() for image in job.images]
        assert {image.state for image in images} == {"stored"}, report
        assert object_store is not None
        keys = set(object_store.keys(cluster.stack.settings.s3_bucket or ""))
        assert {f"podrelay/{image.storage_key}" for image in images} <= keys, report
    else:
        assert outcome.statuses.get("completed", 0) > 0, report


def run_scenario(
    cluster: Cluster,
    scenario: Scenario,
    postgres: PostgresServer | None,
    object_store: S3Server | None = None,
) -> Outcome:
    """Submit, inject the fault halfway (or as the scenario says), and wait for recovery."""
    stack = cluster.stack
    cluster.submit_in_background(JOBS, scenario.name, tenants=scenario.tenants)
    before_fault = int(JOBS * scenario.fault_at)
    wait_until(
        lambda: cluster.accepted_count() >= before_fault,
        timeout=SUBMIT_TIMEOUT_S,
        what=f"{before_fault} jobs accepted by the APIs",
        details=stack.tail,
    )
    stack.mark(f"{cluster.accepted_count()} jobs accepted; fault: {scenario.name}")
    scenario.fault(Context(cluster, postgres, SUBMIT_TIMEOUT_S, object_store))
    fault_ended = time.monotonic()
    stack.mark("fault over")
    cluster.wait_submitted(SUBMIT_TIMEOUT_S)
    recovered_at = wait_recovered(stack, cluster.accepted_count(), window_s=RECOVERY_WINDOW_S)
    stack.mark("recovered" if recovered_at else "recovery window closed")
    wait_runpod_idle(stack)
    outcome = assess(
        cluster,
        scenario=scenario.name,
        fault=describe(scenario),
        jobs=JOBS,
        fault_ended=fault_ended,
        recovered_at=recovered_at,
    )
    if scenario.tenants:
        outcome.notes = trickle_waits(cluster)
    if scenario.endpoints:
        outcome.notes = completed_by_endpoint(cluster)
    return outcome
