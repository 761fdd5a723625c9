"""The job engine end to end with real processes: Celery workers (threads pool, embedded beat),
the API as webhook receiver, Redis (a private server per test) or the embedded broker,
SQLite or PostgreSQL, and the simulator standing in for RunPod.

Nothing here asserts timing: every wait polls the ledger against a generous deadline.
"""

import json
import time
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import func, select

from app.jobs.models import Batch
from app.jobs.service import job_for_task
from app.simulator.config import SimulatorConfig
from tests.jobs.helpers import runpod_state_of
from tests.stack.deployment import GENERATE, SMALL_PARAMS, WorkerStack
from tests.stack.factory import StackFactory
from tests.stack.ledger_views import JobView
from tests.stack.waiting import wait_until

SEED_PROMPT = "beautiful anime girl, detailed eyes"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# The `.delay` call exactly as the seed makes it, in a process whose environment is the stack's.
DELAY_SNIPPET = f"""
import json
from app.tasks.runpod_tasks import generate_image_runpod_task

result = generate_image_runpod_task.delay(user_prompt={SEED_PROMPT!r})
print(json.dumps({{"id": result.id, "summary": result.get(timeout=60)}}))
"""

FAULT_MIX: dict[str, Any] = {
    "error_rates": {"status": 0.2},
    "throttle_rates": {"status": 0.1, "run": 0.1},
    "fail_rate": 0.1,
    "empty_output_rate": 0.05,
    "drop_run_response_rate": 0.05,
    "drop_mode": "error",
}
NO_FAULTS: dict[str, Any] = {
    "error_rates": {},
    "throttle_rates": {},
    "drop_run_response_rate": 0.0,
}
# How the ledger records a second RunPod job for one of its jobs (see app.jobs.webhooks).
DUPLICATE_EVENTS = {"duplicate_detected", "duplicate_cancelled"}
# Codes a job may end with when RunPod never accepted it (every attempt refused or lost).
UNSUBMITTED_CODES = {"runpod_unavailable", "submission_ambiguous"}


def sim_config(**knobs: Any) -> SimulatorConfig:
    values: dict[str, Any] = {
        "workers": 16,
        "job_duration_ms": 400,
        "job_duration_jitter_ms": 100,
        "random_seed": 11,
        "webhook_retry_delay_s": 0.5,
        **knobs,
    }
    return SimulatorConfig.model_validate(values)


def assert_completed_with_image(stack: WorkerStack, job: JobView) -> None:
    assert (job.status, job.error_code) == ("completed", None), job
    [image] = job.images
    assert image.state == "stored", image
    assert stack.stored_bytes(image).startswith(PNG_MAGIC)


def fingerprint_counts(stack: WorkerStack) -> Counter[str]:
    counts: dict[str, int] = stack.simulator.counters()["jobs_by_fingerprint"]
    return Counter(counts)


def test_seed_task_completes_through_a_worker_on_the_embedded_broker(
    stacks: StackFactory,
) -> None:
    """The seed's usage on SQLite and the embedded broker: send_task and `.delay` alike."""
    stack = stacks.build(
        ledger="sqlite", broker="embedded", simulator=stacks.simulator(sim_config())
    )
    assert stack.settings.redis_url is None
    stack.start_worker()

    sent = stack.celery.send_task(GENERATE, kwargs={"user_prompt": SEED_PROMPT})
    summary = sent.get(timeout=60)
    delayed = json.loads(stack.run_python(DELAY_SNIPPET).strip().splitlines()[-1])

    jobs = stack.wait_settled(2, timeout=60)
    with stack.db.session() as session:
        for task_id, task_summary in ((sent.id, summary), (delayed["id"], delayed["summary"])):
            found = job_for_task(session, task_id)
            assert found is not None, f"no job for task {task_id}"
            assert task_summary["job_id"] == found.id
            assert found.prompt == SEED_PROMPT
    for job in jobs:
        assert_completed_with_image(stack, job)
        assert job.runpod_job_id
        assert job.attempts == 1
    assert stack.simulator.counters()["jobs_created"] == 2


def test_batch_of_ten_completes_and_eleven_is_refused(stacks: StackFactory) -> None:
    stack = stacks.build(
        ledger="postgresql", broker="redis", simulator=stacks.simulator(sim_config())
    )
    stack.start_worker()
    prompts = [f"batch prompt {n}: a lighthouse" for n in range(10)]

    result = stack.send_batch(prompts, params=SMALL_PARAMS).get(timeout=60)
    jobs = stack.wait_settled(10, timeout=60)
    assert len(result["jobs"]) == 10
    assert {job.id for job in jobs} == {entry["job_id"] for entry in result["jobs"]}
    for job in jobs:
        assert_completed_with_image(stack, job)
        assert job.batch_id == result["batch_id"]
        assert job.prompt == prompts[job.batch_index or 0]
    assert sorted(job.batch_index for job in jobs if job.batch_index is not None) == list(range(10))

    refused = stack.send_batch([*prompts, "one too many"], params=SMALL_PARAMS)
    with pytest.raises(ValueError, match="a batch holds 1 to 10 prompts, not 11"):
        refused.get(timeout=60)
    assert refused.state == "FAILURE"
    with stack.db.session() as session:
        assert session.scalar(select(func.count()).select_from(Batch)) == 1
    assert len(stack.jobs()) == 10
    assert stack.simulator.counters()["jobs_created"] == 10


def test_webhook_mode_completes_with_at_most_two_runpod_calls_per_job(
    stacks: StackFactory,
) -> None:
    stack = stacks.build(
        ledger="postgresql",
        broker="redis",
        webhooks=True,
        simulator=stacks.simulator(sim_config()),
    )
    stack.start_api()
    stack.start_worker()
    count = 20
    task_ids = [stack.send(f"webhook prompt {n}", params=SMALL_PARAMS) for n in range(count)]

    jobs = stack.wait_settled(count, timeout=60)
    assert set(stack.jobs_by_task(task_ids)) == set(task_ids)
    for job in jobs:
        assert_completed_with_image(stack, job)
        [(_, _, _, data)] = job.terminal_events
        assert data["source"] == "webhook", job
    counters = stack.simulator.counters()
    calls: dict[str, int] = counters["calls"]
    assert calls["run"] == count
    assert calls.get("status", 0) <= count
    assert sum(calls.values()) <= 2 * count, calls
    assert counters["webhooks"]["delivered"] == count


@pytest.mark.timeout(300)
def test_kill_9_with_200_jobs_in_flight_loses_and_duplicates_nothing(
    stacks: StackFactory,
) -> None:
    """Redis broker, PostgreSQL ledger. RunPod holds the 200 jobs (no simulated worker free)
    until the Celery worker is dead, then runs them for 3-4 s each while it restarts.

    The kill usually lands mid-tick: the jobs that tick had claimed stay leased to the dead
    worker for POLL_LEASE (15 s here, 60 s by default) before the new worker polls them.
    """
    simulator = stacks.simulator(
        sim_config(workers=0, job_duration_ms=3500, job_duration_jitter_ms=500)
    )
    # RUNPOD_POLL_INTERVAL at its default: 200 queued jobs are polled every 5 s at most.
    stack = stacks.build(
        ledger="postgresql",
        broker="redis",
        simulator=simulator,
        runpod_poll_interval=5.0,
        poll_lease=15.0,
        submit_lease=30.0,
    )
    stack.start_worker()
    count = 200
    task_ids = [
        stack.send(f"in flight {n}: a quiet harbour", params=SMALL_PARAMS) for n in range(count)
    ]
    stack.mark("200 tasks sent")

    stack.wait_accepted(count, timeout=120)
    stack.mark("200 jobs accepted by RunPod")
    stack.kill_worker()
    at_kill = stack.progress()
    stack.mark(f"worker killed; {stack.claimed()} jobs still claimed by its tracker")
    assert (at_kill.accepted, at_kill.terminal) == (count, 0)
    simulator.set_faults(workers=256)  # RunPod scales up: every job runs while the worker is dead
    stack.start_worker()
    stack.mark("worker restarted")

    jobs = stack.wait_settled(count, timeout=150)
    stack.mark("200 jobs settled")
    assert set(stack.jobs_by_task(task_ids)) == set(task_ids)
    for job in jobs:
        assert_completed_with_image(stack, job)
        assert job.attempts == 1
    fingerprints = fingerprint_counts(stack)
    assert len(fingerprints) == count
    assert set(fingerprints.values()) == {1}
    assert stack.simulator.counters()["jobs_created"] == count


@pytest.mark.timeout(240)
def test_redis_restart_mid_run_loses_no_job(stacks: StackFactory) -> None:
    """A private redis-server (no persistence) is killed while RunPod runs the jobs, and
    started again on the same port; the same worker carries on and new tasks still flow."""
    redis_server = stacks.redis()
    simulator = stacks.simulator(
        sim_config(workers=64, job_duration_ms=3000, job_duration_jitter_ms=500)
    )
    stack = stacks.build(
        ledger="sqlite", broker="redis", redis_server=redis_server, simulator=simulator
    )
    worker = stack.start_worker()
    before = [stack.send(f"before restart {n}", params=SMALL_PARAMS) for n in range(30)]

    stack.wait_accepted(len(before), timeout=60)
    redis_server.kill()
    in_flight = len(before) - stack.progress().terminal
    time.sleep(2.0)  # the worker, its beat and its tracker run against a dead broker meanwhile
    redis_server.start()
    after = [stack.send(f"after restart {n}", params=SMALL_PARAMS) for n in range(20)]

    jobs = stack.wait_settled(50, timeout=150)
    assert worker.poll() is None, "the worker died with Redis"
    assert stack.worker is worker
    assert set(stack.jobs_by_task(before + after)) == set(before + after)
    for job in jobs:
        assert_completed_with_image(stack, job)
    assert in_flight > 0
    assert set(fingerprint_counts(stack).values()) == {1}


def wait_runpod_quiet(stack: WorkerStack) -> dict[str, Any]:
    """Wait until RunPod runs nothing and every webhook it owes was delivered (or given up)."""
    counters: dict[str, Any] = {}

    def quiet() -> bool:
        nonlocal counters
        counters = stack.simulator.counters()
        by_status: dict[str, int] = counters["jobs_by_status"]
        if by_status.get("IN_QUEUE", 0) or by_status.get("IN_PROGRESS", 0):
            return False
        if stack.api_port is None:
            return True
        hooks: dict[str, int] = counters["webhooks"]
        owed = by_status.get("COMPLETED", 0) + by_status.get("FAILED", 0)
        return hooks["delivered"] + hooks["failed"] + hooks["dropped"] == owed

    wait_until(quiet, timeout=60, what="RunPod idle and its webhooks delivered")
    return counters


def check_fault_mix_outcome(stack: WorkerStack, count: int) -> dict[str, Any]:
    """Every job's final state is what RunPod says of the job it kept, with exactly one
    result; every RunPod job is one of the ledger's submissions. Returns a report of what
    became of the duplicates RunPod ran."""
    counters = wait_runpod_quiet(stack)
    jobs = stack.wait_settled(count, timeout=30)  # late webhooks of orphans are in by now
    stack.simulator.set_faults(**NO_FAULTS)  # read RunPod's truth without injected failures
    codes: Counter[str] = Counter()
    duplicates = {"detected": 0, "cancelled": 0, "ran_to_end_ignored": 0, "unknown_id": 0}
    reached_runpod = 0
    paths: Counter[str] = Counter()
    for job in jobs:
        codes[job.error_code or job.status] += 1
        assert len(job.terminal_events) == 1, job
        reached_runpod += sum(s.outcome in ("accepted", "ambiguous") for s in job.submissions)
        if job.runpod_job_id is None:
            assert job.status == "failed", job
            assert job.error_code in UNSUBMITTED_CODES, job
            assert not job.images
            continue
        kept = stack.runpod_status(job.runpod_job_id)
        assert (job.status, job.error_code) == runpod_state_of(kept), (job, kept)
        if job.status == "completed":
            [image] = job.images
            assert image.state == "stored"
            # The one image kept is the kept RunPod job's, whatever else RunPod ran.
            assert image.source_url
            assert image.source_url in json.dumps(kept["output"])
        else:
            assert not job.images, job
        # The orphan's webhook came before the second answer was recorded (that answer is
        # then cancelled at once), or after it (the first result wins, the rest is cancelled).
        found = {kind for kind, *_ in job.events} & DUPLICATE_EVENTS
        duplicates["detected"] += bool(found)
        paths.update(found)
        for submission in job.submissions:
            other = submission.runpod_job_id
            if submission.outcome not in ("accepted", "ambiguous") or other == job.runpod_job_id:
                continue
            if other is None:
                duplicates["unknown_id"] += 1
                continue
            state = stack.runpod_status(other)["status"]
            duplicates["cancelled" if state == "CANCELLED" else "ran_to_end_ignored"] += 1
    fingerprints = fingerprint_counts(stack)
    report = {
        "outcomes": dict(codes),
        "runpod_jobs": counters["jobs_created"],
        "run_responses": counters["responses"].get("run", {}),
        "status_responses": counters["responses"].get("status", {}),
        "cancel_calls": counters["calls"].get("cancel", 0),
        "duplicate_submissions": sum(n - 1 for n in fingerprints.values()),
        **duplicates,
        "detected_by": dict(paths),
    }
    print(f"\nfault mix report ({'webhook' if stack.api_port else 'poll'} mode): {report}")
    assert len(fingerprints) == count  # distinct prompts: one fingerprint per job
    assert counters["jobs_created"] == reached_runpod, "a RunPod job the ledger does not know"
    assert report["duplicate_submissions"] == sum(
        duplicates[key] for key in ("cancelled", "ran_to_end_ignored", "unknown_id")
    )
    return report


@pytest.mark.timeout(240)
def test_fault_mix_ends_every_job_in_the_right_state_polling(stacks: StackFactory) -> None:
    simulator = stacks.simulator(sim_config(workers=32, job_duration_ms=800, **FAULT_MIX))
    stack = stacks.build(ledger="sqlite", broker="embedded", simulator=simulator)
    stack.start_worker()
    count = 40
    for n in range(count):
        stack.send(f"fault mix {n}: a desert at noon", params=SMALL_PARAMS)

    stack.wait_settled(count, timeout=150)
    report = check_fault_mix_outcome(stack, count)
    assert {"completed", "worker_failed"} <= set(report["outcomes"])
    assert set(report["status_responses"]) - {"200"}, "no status call met a fault"


@pytest.mark.timeout(240)
def test_fault_mix_in_webhook_mode_yields_one_result_per_job(stacks: StackFactory) -> None:
    """Dropped /run answers are resubmitted after SUBMIT_RETRY_BASE; the orphan shows up by
    its webhook token, and the ledger still keeps exactly one result per job."""
    simulator = stacks.simulator(
        sim_config(workers=64, job_duration_ms=2500, job_duration_jitter_ms=300, **FAULT_MIX)
    )
    stack = stacks.build(
        ledger="postgresql",
        broker="redis",
        webhooks=True,
        simulator=simulator,
        submit_retry_base=0.5,
        webhook_safety_poll=15.0,
    )
    stack.start_api()
    stack.start_worker()
    count = 60
    for n in range(count):
        stack.send(f"webhook fault mix {n}: a forest in fog", params=SMALL_PARAMS)

    stack.wait_settled(count, timeout=150)
    report = check_fault_mix_outcome(stack, count)
    assert report["run_responses"].get("502", 0) >= 1, "no /run answer was dropped"
    assert report["duplicate_submissions"] >= 1
    assert report["detected"] >= 1, "no orphan was recognised by its webhook"
    assert report["unknown_id"] == 0


def test_job_past_its_deadline_times_out_and_is_cancelled_at_runpod(
    stacks: StackFactory,
) -> None:
    simulator = stacks.simulator(sim_config(hang_rate=1.0))
    stack = stacks.build(ledger="sqlite", broker="embedded", simulator=simulator)
    stack.start_worker()
    task_id = stack.send("a job that never ends", params=SMALL_PARAMS, timeout=2.0)

    [job] = stack.wait_settled(1, timeout=60)
    assert job.celery_task_id == task_id
    assert (job.status, job.error_code) == ("timed_out", "deadline_exceeded")
    assert job.runpod_job_id
    assert stack.runpod_status(job.runpod_job_id)["status"] == "CANCELLED"
    assert simulator.counters()["calls"].get("cancel", 0) >= 1
