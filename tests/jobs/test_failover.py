"""Routes with several endpoints: an endpoint whose /run keeps failing leaves rotation and the
route's other endpoint, or a fallback route, takes its jobs; none is run twice or lost."""

import asyncio
import re
from pathlib import Path

from sqlalchemy import select

from app.core.db import utcnow
from app.jobs.dispatch import Dispatcher
from app.jobs.engine import JobEngine
from app.jobs.models import Submission
from app.scheduler.circuit import Circuit, record_run_outcomes
from app.scheduler.models import EndpointState
from app.simulator.server import SimulatorServer
from tests.jobs.helpers import event_kinds, load, make_job, track_until_terminal
from tests.stack.ledger import EngineFactory
from tests.stack.waiting import free_port


def _dead_endpoint(endpoint_id: str) -> str:
    return f"http://127.0.0.1:{free_port()}/v2/{endpoint_id}"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "routes.toml"
    path.write_text(text)
    return path


def _state(engine: JobEngine, endpoint_id: str) -> EndpointState:
    with engine.db.session() as session:
        return session.get_one(EndpointState, endpoint_id)


def _submissions(engine: JobEngine, job_id: str) -> list[tuple[str | None, str]]:
    with engine.db.session() as session:
        rows = session.execute(
            select(Submission.endpoint, Submission.outcome)
            .where(Submission.job_id == job_id)
            .order_by(Submission.id)
        )
        return [(endpoint, outcome) for endpoint, outcome in rows]


async def test_an_endpoint_whose_run_keeps_failing_leaves_rotation(
    make_engine: EngineFactory, simulator: SimulatorServer, tmp_path: Path
) -> None:
    routes = _write(
        tmp_path,
        f"""
[routes.sdxl]
[[routes.sdxl.endpoints]]
url = "{_dead_endpoint("ep-a")}"
weight = 100
[[routes.sdxl.endpoints]]
url = "{simulator.base_url}/ep-b"
weight = 0.01
""",
    )
    engine = make_engine(
        routes_file=routes,
        circuit_failures=2,
        circuit_cooldown=300,
        submit_max_attempts=4,
        runpod_max_retries=0,
    )
    job_ids = [make_job(engine, f"fox {n}", route="sdxl") for n in range(6)]

    await track_until_terminal(engine, *job_ids)

    a = _state(engine, "ep-a")
    assert a.circuit == Circuit.OPEN
    assert re.match(
        r"/run failed \d+ times in a row: could not reach RunPod", a.circuit_reason or ""
    )
    assert a.retry_at is not None
    assert a.trips == 1
    for job_id in job_ids:
        job = load(engine, job_id)
        assert (job.status, job.endpoint) == ("completed", "ep-b")
        attempts = _submissions(engine, job_id)
        assert attempts[-1] == ("ep-b", "accepted")
        assert all(outcome == "rejected" for _, outcome in attempts[:-1])
    failed_at_a = [job_id for job_id in job_ids if len(_submissions(engine, job_id)) > 1]
    assert failed_at_a, "the heavier endpoint took the first round"
    assert ("submit_retry", "pending") in event_kinds(engine, failed_at_a[0])


async def test_a_route_with_no_endpoint_in_rotation_falls_back(
    make_engine: EngineFactory, simulator: SimulatorServer, tmp_path: Path
) -> None:
    routes = _write(
        tmp_path,
        f"""
[routes.sdxl]
default = true
fallbacks = ["flux"]
[[routes.sdxl.endpoints]]
url = "{_dead_endpoint("ep-a")}"

[routes.flux]
kind = "flux"
[[routes.flux.endpoints]]
url = "{simulator.base_url}/ep-flux"
""",
    )
    engine = make_engine(
        routes_file=routes,
        circuit_failures=1,
        circuit_cooldown=300,
        submit_max_attempts=3,
        runpod_max_retries=0,
    )
    job_id = make_job(engine, "a lighthouse", route="sdxl")

    await track_until_terminal(engine, job_id)

    job = load(engine, job_id)
    assert (job.status, job.route, job.endpoint) == ("completed", "flux", "ep-flux")
    assert ("rerouted", "pending") in event_kinds(engine, job_id)
    assert _state(engine, "ep-a").circuit == Circuit.OPEN


def _two_endpoints(tmp_path: Path, simulator: SimulatorServer) -> Path:
    for endpoint_id in ("ep-a", "ep-b"):
        simulator.set_endpoint(endpoint_id, workers=2, job_duration_ms=50)
    return _write(
        tmp_path,
        f"""
[routes.sdxl]
[[routes.sdxl.endpoints]]
url = "{simulator.base_url}/ep-a"
weight = 100
[[routes.sdxl.endpoints]]
url = "{simulator.base_url}/ep-b"
weight = 0.01
""",
    )


async def test_jobs_queued_at_a_throttled_endpoint_move_once_their_cancel_is_confirmed(
    make_engine: EngineFactory, simulator: SimulatorServer, tmp_path: Path
) -> None:
    engine = make_engine(
        routes_file=_two_endpoints(tmp_path, simulator),
        health_check_interval=0.2,
        circuit_cooldown=0.3,
        max_in_flight=4,
    )
    simulator.set_endpoint("ep-a", throttled=True)  # its GPUs are gone
    first = [make_job(engine, f"owl {n}", route="sdxl") for n in range(6)]
    # The outage began since A's last /health: it takes jobs, which wait IN_QUEUE there.
    await Dispatcher(engine).dispatch_round()
    while not any(load(engine, job_id).status == "queued" for job_id in first):
        await asyncio.sleep(0.05)

    await track_until_terminal(engine, *first)

    moved = [job_id for job_id in first if ("moved", "pending") in event_kinds(engine, job_id)]
    assert moved, "the heavier endpoint took jobs before its circuit opened"
    for job_id in first:
        assert (load(engine, job_id).status, load(engine, job_id).endpoint) == ("completed", "ep-b")
    for job_id in moved:
        assert [outcome for _, outcome in _submissions(engine, job_id)] == ["moved", "accepted"]
    # RunPod ran each input once: the moved ones were cancelled at A before they started.
    at_a = simulator.statuses_by_input("ep-a")
    assert at_a
    assert all(statuses == ["CANCELLED"] for statuses in at_a.values())
    assert all(
        statuses == ["COMPLETED"] for statuses in simulator.statuses_by_input("ep-b").values()
    )
    a = _state(engine, "ep-a")
    assert a.circuit == Circuit.OPEN
    assert a.circuit_reason == "no worker can run (2 throttled) while jobs wait"

    # A recovers: once its cooldown is over, /health no longer trips it, a probe job is sent
    # there, and its acceptance puts A back in rotation.
    simulator.set_endpoint("ep-a", throttled=None)
    # Its cooldown doubled each time /health found it still throttled: wait it out, or B alone
    # could run the later jobs before A is probed.
    dispatcher = Dispatcher(engine)
    while _state(engine, "ep-a").circuit != Circuit.HALF_OPEN:
        await dispatcher.check_due_endpoints()
        await asyncio.sleep(0.05)
    later = [make_job(engine, f"heron {n}", route="sdxl") for n in range(6)]
    await track_until_terminal(engine, *later)
    assert _state(engine, "ep-a").circuit == Circuit.CLOSED
    assert {load(engine, job_id).endpoint for job_id in later} >= {"ep-a"}


async def test_a_job_whose_run_answer_was_ambiguous_never_moves(
    make_engine: EngineFactory, simulator: SimulatorServer, tmp_path: Path
) -> None:
    engine = make_engine(
        routes_file=_two_endpoints(tmp_path, simulator),
        health_check_interval=0.2,
        circuit_cooldown=300,
        submit_max_attempts=5,
    )
    simulator.set_endpoint("ep-a", drop_run_response_rate=1.0, throttled=True)
    job_id = make_job(engine, "a lost answer", route="sdxl")
    dispatcher = Dispatcher(engine)

    async def turn() -> None:
        await dispatcher.check_due_endpoints()
        await dispatcher.dispatch_round()
        await asyncio.sleep(0.05)

    await dispatcher.dispatch_round()  # before A's first /health
    while [outcome for _, outcome in _submissions(engine, job_id)] != ["ambiguous"]:
        await asyncio.sleep(0.05)
    # RunPod holds it IN_QUEUE at A, which leaves rotation; B is idle, yet the job stays.
    await turn()
    while _state(engine, "ep-a").circuit != Circuit.OPEN:
        await turn()
    for _ in range(20):
        await turn()
    job = load(engine, job_id)
    assert (job.status, job.endpoint) == ("pending", "ep-a")
    assert {endpoint for endpoint, _ in _submissions(engine, job_id)} == {"ep-a"}
    assert simulator.statuses_by_input("ep-b") == {}


async def test_an_acceptance_clears_failures_and_closes_only_a_half_open_circuit(
    make_engine: EngineFactory,
) -> None:
    engine = make_engine()
    settings = engine.settings
    with engine.db.session() as session:
        for endpoint_id, circuit, failures in (
            ("closed", Circuit.CLOSED, 2),
            ("half", Circuit.HALF_OPEN, 0),
            ("open", Circuit.OPEN, 0),
        ):
            state = EndpointState(endpoint=endpoint_id, route="default", checked_at=utcnow())
            state.workers, state.jobs, state.max_in_flight, state.service_rate = {}, {}, 8, 1.0
            state.circuit, state.run_failures, state.trips = circuit, failures, 3
            session.add(state)
    with engine.db.session() as session:
        for endpoint_id in ("closed", "half", "open"):
            record_run_outcomes(session, settings, endpoint_id, accepted=1, failures=[])
    closed, half, still_open = (_state(engine, e) for e in ("closed", "half", "open"))
    assert (closed.circuit, closed.run_failures, closed.trips) == (Circuit.CLOSED, 0, 3)
    assert (half.circuit, half.trips, half.retry_at) == (Circuit.CLOSED, 0, None)
    assert (still_open.circuit, still_open.trips) == (Circuit.OPEN, 3)

    with engine.db.session() as session:
        record_run_outcomes(session, settings, "closed", accepted=0, failures=["503", "503"])
    assert (_state(engine, "closed").circuit, _state(engine, "closed").run_failures) == (
        Circuit.CLOSED,
        2,
    )
    with engine.db.session() as session:  # CIRCUIT_FAILURES (3) in a row
        record_run_outcomes(session, settings, "closed", accepted=0, failures=["refused"])
    tripped = _state(engine, "closed")
    assert (tripped.circuit, tripped.trips) == (Circuit.OPEN, 4)
    assert tripped.circuit_reason == "/run failed 3 times in a row: refused"


async def test_a_job_running_longer_than_max_queue_delay_keeps_its_endpoint_in_rotation(
    make_engine: EngineFactory, simulator: SimulatorServer, tmp_path: Path
) -> None:
    """In webhook mode the ledger hears of a job only when it ends: one that runs longer than
    `max_queue_delay` still reads as queued there. The health check asks RunPod before it
    counts such a job as stuck, so the endpoint stays in rotation and nothing is cancelled."""
    simulator.set_endpoint("ep-a", workers=1, job_duration_ms=4000)
    routes = _write(
        tmp_path,
        f"""
[routes.sdxl]
max_queue_delay = 0.5
[[routes.sdxl.endpoints]]
url = "{simulator.base_url}/ep-a"
""",
    )
    engine = make_engine(
        routes_file=routes,
        health_check_interval=0.1,
        # Webhooks go nowhere and the safety poll is far off: only the health check reads it.
        public_base_url=f"http://127.0.0.1:{free_port()}",
        webhook_safety_poll=600,
    )
    job_id = make_job(engine, "a long render", route="sdxl")
    dispatcher = Dispatcher(engine)
    await dispatcher.dispatch_round()
    while load(engine, job_id).status != "queued":
        await asyncio.sleep(0.05)
    while list(simulator.statuses_by_input("ep-a").values()) != [["IN_PROGRESS"]]:
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.0)  # past max_queue_delay, while it runs

    for _ in range(5):
        await dispatcher.check_due_endpoints()
        await asyncio.sleep(0.1)

    assert _state(engine, "ep-a").circuit == Circuit.CLOSED
    assert load(engine, job_id).status == "running"
    assert list(simulator.statuses_by_input("ep-a").values()) == [["IN_PROGRESS"]]
