"""The job engine in-process, against the simulator and a real ledger (SQLite and PostgreSQL)."""

import asyncio
import hashlib
from pathlib import Path

import httpx
import pytest

from app.core.db import utcnow
from app.jobs import service
from app.jobs.cancel import JobAlreadyFinished, cancel_job
from app.jobs.engine import JobEngine
from app.jobs.models import Job
from app.jobs.status import JobStatus
from app.jobs.submit import submit_job, submit_jobs
from app.jobs.tracking import enforce_deadlines, poll_budget, poll_due
from app.simulator.server import SimulatorServer
from tests.jobs.helpers import (
    event_kinds,
    load,
    make_job,
    track_until_terminal,
)
from tests.stack.ledger import engine_settings


async def test_job_completes_and_its_image_is_kept(engine: JobEngine) -> None:
    job_id = make_job(engine)
    await submit_job(engine, job_id)
    job = load(engine, job_id)
    assert job.status == JobStatus.QUEUED
    assert job.runpod_job_id is not None
    await track_until_terminal(engine, job_id)
    job = load(engine, job_id)
    assert job.status == JobStatus.COMPLETED
    assert job.delay_ms is not None
    assert job.execution_ms is not None
    assert job.submitted_at
    assert job.finished_at
    assert job.finished_at >= job.submitted_at
    [image] = job.images
    assert image.state == "stored"
    assert (image.width, image.height, image.mime_type) == (256, 256, "image/png")
    assert image.source_url
    assert image.source_url.startswith("http://127.0.0.1")
    stored = engine.store.read(image.storage_key or "")
    assert len(stored) == image.size_bytes
    kinds = event_kinds(engine, job_id)
    assert kinds[0] == ("created", "pending")
    assert ("status", "queued") in kinds
    assert kinds[-1] == ("status", "completed")


async def test_stored_image_matches_the_workers_copy(engine: JobEngine) -> None:
    job_id = make_job(engine)
    await submit_job(engine, job_id)
    await track_until_terminal(engine, job_id)
    [image] = load(engine, job_id).images
    stored = engine.store.read(image.storage_key or "")
    assert hashlib.sha256(stored).hexdigest() == image.sha256
    assert httpx.get(image.source_url or "").content == stored


async def test_base64_output_is_decoded_at_completion(
    engine: JobEngine, simulator: SimulatorServer
) -> None:
    simulator.set_faults(output_shape="a1111")
    job_id = make_job(engine)
    await submit_job(engine, job_id)
    await track_until_terminal(engine, job_id)
    [image] = load(engine, job_id).images
    assert image.state == "stored"
    assert image.source_url is None
    assert image.sha256 is not None


async def test_worker_failure_is_final_with_a_readable_error(
    engine: JobEngine, simulator: SimulatorServer
) -> None:
    simulator.set_faults(fail_rate=1.0, fail_style="json")
    job_id = make_job(engine)
    await submit_job(engine, job_id)
    await track_until_terminal(engine, job_id)
    job = load(engine, job_id)
    assert job.status == JobStatus.FAILED
    assert job.error_code == "worker_failed"
    assert job.error_message
    assert "Traceback" not in job.error_message
    assert job.attempts == 1


async def test_completed_without_output_fails_the_job(
    engine: JobEngine, simulator: SimulatorServer
) -> None:
    simulator.set_faults(empty_output_rate=1.0)
    job_id = make_job(engine)
    await submit_job(engine, job_id)
    await track_until_terminal(engine, job_id)
    job = load(engine, job_id)
    assert (job.status, job.error_code) == (JobStatus.FAILED, "output_missing")


async def test_submission_retries_from_the_ledger(
    engine: JobEngine, simulator: SimulatorServer
) -> None:
    simulator.set_faults(throttle_rates={"run": 1.0})
    job_id = make_job(engine)
    await submit_job(engine, job_id)
    job = load(engine, job_id)
    assert (job.status, job.attempts) == (JobStatus.PENDING, 1)
    assert ("submit_retry", "pending") in event_kinds(engine, job_id)
    simulator.set_faults(throttle_rates={})
    await track_until_terminal(engine, job_id)
    job = load(engine, job_id)
    assert (job.status, job.attempts) == (JobStatus.COMPLETED, 2)
    assert simulator.counters()["jobs_created"] == 1


async def test_submission_gives_up_after_max_attempts(
    engine: JobEngine, simulator: SimulatorServer
) -> None:
    simulator.set_faults(throttle_rates={"run": 1.0})
    job_id = make_job(engine)
    await submit_job(engine, job_id)
    await track_until_terminal(engine, job_id)
    job = load(engine, job_id)
    assert (job.status, job.error_code, job.attempts) == (
        JobStatus.FAILED,
        "runpod_unavailable",
        3,
    )
    assert simulator.counters()["jobs_created"] == 0


async def test_refused_key_fails_at_once(engine: JobEngine, simulator: SimulatorServer) -> None:
    simulator.set_faults(api_key="another-key")
    job_id = make_job(engine)
    await submit_job(engine, job_id)
    job = load(engine, job_id)
    assert (job.status, job.error_code) == (JobStatus.FAILED, "runpod_auth_failed")
    assert "another-key" not in (job.error_message or "")


async def test_submitting_twice_makes_one_runpod_job(
    engine: JobEngine, simulator: SimulatorServer
) -> None:
    job_id = make_job(engine)
    await asyncio.gather(submit_job(engine, job_id), submit_job(engine, job_id))
    await submit_job(engine, job_id)
    assert simulator.counters()["jobs_created"] == 1
    assert load(engine, job_id).attempts == 1


async def test_deadline_cancels_at_runpod_and_times_out(
    engine: JobEngine, simulator: SimulatorServer
) -> None:
    simulator.set_faults(hang_rate=1.0)
    job_id = make_job(engine, timeout_s=0.5)
    await submit_job(engine, job_id)
    await track_until_terminal(engine, job_id)
    job = load(engine, job_id)
    assert (job.status, job.error_code) == (JobStatus.TIMED_OUT, "deadline_exceeded")
    async with engine.runpod as client:
        assert (await client.status(job.runpod_job_id or "")).status == "CANCELLED"


async def test_cancel_running_job(engine: JobEngine, simulator: SimulatorServer) -> None:
    simulator.set_faults(job_duration_ms=5000, job_duration_jitter_ms=0)
    job_id = make_job(engine)
    await submit_job(engine, job_id)
    with engine.db.session() as session:
        runpod_id = cancel_job(session, session.get_one(Job, job_id))
    assert runpod_id
    with engine.db.session() as session:
        assert cancel_job(session, session.get_one(Job, job_id)) is None  # idempotent
    job = load(engine, job_id)
    assert (job.status, job.error_code) == (JobStatus.CANCELLED, "cancelled")


async def test_cancelling_a_finished_job_is_a_conflict(engine: JobEngine) -> None:
    job_id = make_job(engine)
    await submit_job(engine, job_id)
    await track_until_terminal(engine, job_id)
    with engine.db.session() as session, pytest.raises(JobAlreadyFinished):
        cancel_job(session, session.get_one(Job, job_id))


async def test_polling_never_exceeds_its_share_of_the_status_limit(
    simulator: SimulatorServer, database_url: str, tmp_path: Path
) -> None:
    settings = engine_settings(
        simulator, database_url, tmp_path, runpod_status_rate_limit=50, poll_sweep_interval=1.0
    )
    engine = JobEngine.from_settings(settings)
    from app.core.migrate import upgrade_database

    upgrade_database(engine.db)
    simulator.set_faults(workers=0)
    job_ids = [make_job(engine, f"p{n}") for n in range(12)]
    for job_id in job_ids:
        await submit_job(engine, job_id)
    with engine.db.session() as session:
        for job in session.query(Job):
            job.next_poll_at = job.created_at
    assert poll_budget(engine) == 4
    assert await poll_due(engine) == 4
    assert simulator.counters()["calls"].get("status", 0) == 4
    await engine.aclose()
    engine.db.dispose()


async def test_unreachable_image_is_retried_then_recorded_as_failed(
    engine: JobEngine, simulator: SimulatorServer
) -> None:
    job_id = make_job(engine)
    await submit_job(engine, job_id)
    await asyncio.sleep(1.0)  # the simulated job is done by now
    with engine.db.session() as session:
        session.get_one(Job, job_id).next_poll_at = utcnow()
    await poll_due(engine)
    with engine.db.session() as session:
        [image] = session.get_one(Job, job_id).images
        assert image.state == "pending"
        image.source_url = f"{simulator.url}/images/missing.png"
    await track_until_terminal(engine, job_id)
    job = load(engine, job_id)
    assert job.status == JobStatus.COMPLETED
    [image] = job.images
    assert image.state == "failed"
    assert image.download_attempts == engine.settings.image_download_attempts
    assert image.error == "download answered HTTP 404"


async def test_deadline_keeps_a_result_that_arrived_meanwhile(engine: JobEngine) -> None:
    job_id = make_job(engine, timeout_s=1.0)
    await submit_job(engine, job_id)
    with engine.db.session() as session:  # no poll before the deadline
        session.get_one(Job, job_id).next_poll_at = None
    await asyncio.sleep(1.3)
    assert await enforce_deadlines(engine) == 1
    job = load(engine, job_id)
    assert job.status == JobStatus.COMPLETED
    assert len(job.images) == 1


async def test_batched_submission_sends_each_job_once(
    engine: JobEngine, simulator: SimulatorServer
) -> None:
    job_ids = [make_job(engine, f"batch {n}") for n in range(20)]
    assert await submit_jobs(engine, [*job_ids, *job_ids[:5]]) == 20
    assert await submit_jobs(engine, job_ids) == 0
    counters = simulator.counters()
    assert counters["jobs_created"] == 20
    assert set(counters["jobs_by_fingerprint"].values()) == {1}
    assert {load(engine, job_id).status for job_id in job_ids} == {JobStatus.QUEUED}


async def test_job_dropped_by_runpod_after_its_deadline_times_out(
    engine: JobEngine, simulator: SimulatorServer
) -> None:
    simulator.set_faults(hang_rate=1.0)
    job_ids = [make_job(engine, "late"), make_job(engine, "early")]
    for job_id in job_ids:
        await submit_job(engine, job_id)
    simulator.reset()  # RunPod forgets both jobs
    with engine.db.session() as session:
        late = session.get_one(Job, job_ids[0])
        late.deadline_at = utcnow()
        for job_id in job_ids:
            session.get_one(Job, job_id).next_poll_at = utcnow()
    assert await poll_due(engine) + await poll_due(engine) == 2  # one per tick at this budget
    late_job, early_job = (load(engine, job_id) for job_id in job_ids)
    assert (late_job.status, late_job.error_code) == (JobStatus.TIMED_OUT, "deadline_exceeded")
    assert (early_job.status, early_job.error_code) == (JobStatus.FAILED, "lost_at_runpod")


async def test_each_run_answer_is_recorded_while_slower_ones_are_in_flight(
    engine: JobEngine, simulator: SimulatorServer
) -> None:
    # Three /run calls fit the window; the fourth is answered 429 and retried about 3 s later.
    simulator.set_faults(rate_limits={"run": 3}, rate_limit_window_s=3.0)
    job_ids = [make_job(engine, f"window {n}") for n in range(4)]
    submitting = asyncio.ensure_future(submit_jobs(engine, job_ids))

    def runpod_ids() -> list[str | None]:
        return [load(engine, job_id).runpod_job_id for job_id in job_ids]

    recorded = await asyncio.to_thread(runpod_ids)
    while sum(map(bool, recorded)) < 3 and not submitting.done():
        await asyncio.sleep(0.02)
        recorded = await asyncio.to_thread(runpod_ids)
    # A kill -9 now loses only the answer still in flight, not those that already came.
    assert sum(map(bool, recorded)) == 3
    assert not submitting.done()
    assert await submitting == 4
    assert all(await asyncio.to_thread(runpod_ids))
    assert {load(engine, job_id).status for job_id in job_ids} == {JobStatus.QUEUED}
    assert simulator.counters()["jobs_created"] == 4


async def test_an_attempt_cut_off_before_its_answer_is_recorded_is_flagged(
    engine: JobEngine,
) -> None:
    job_id = make_job(engine)
    with engine.db.session() as session:  # what a worker killed during POST /run leaves behind
        service.new_submission(session, session.get_one(Job, job_id))
    await submit_job(engine, job_id)
    job = load(engine, job_id)
    assert job.status == JobStatus.QUEUED
    assert job.attempts == 2
    first, second = sorted(job.submissions, key=lambda submission: submission.id)
    assert (first.outcome, first.runpod_job_id) == ("ambiguous", None)
    assert first.error == "the worker stopped before RunPod's answer was recorded"
    assert (second.outcome, second.runpod_job_id) == ("accepted", job.runpod_job_id)
    assert ("submission_in_doubt", "pending") in event_kinds(engine, job_id)
    await submit_job(engine, job_id)  # nothing left in doubt: no second flag
    kinds = [kind for kind, _ in event_kinds(engine, job_id)]
    assert kinds.count("submission_in_doubt") == 1
