"""Recording RunPod's answers to POST /run (`app.jobs.answers`), on both backends: what each
acceptance does to the job, its submission and its timeline."""

from dataclasses import replace

from app.jobs.answers import Answer, record_answers
from app.jobs.cancel import cancel_job
from app.jobs.claims import Prepared, prepare
from app.jobs.engine import JobEngine
from app.jobs.models import Job
from app.jobs.status import JobStatus
from app.runpod import JobState, RunPodStatus
from tests.jobs.helpers import event_kinds, load, make_job


def _prepared(engine: JobEngine, job_id: str) -> Prepared:
    endpoint = engine.catalogue.endpoints[0]
    with engine.db.session() as session:
        (item,) = prepare(session, engine.settings, endpoint, job_ids=[job_id])
    return item


def _accepted(item: Prepared, runpod_id: str) -> Answer:
    return item, JobState(id=runpod_id, status=RunPodStatus.IN_QUEUE, raw_status="IN_QUEUE")


def _record(engine: JobEngine, answers: list[Answer]) -> list[str | None]:
    with engine.db.session() as session:
        return record_answers(session, engine, answers)


def test_an_accepted_job_is_queued_with_its_runpod_id(engine: JobEngine) -> None:
    job_id = make_job(engine)
    item = _prepared(engine, job_id)
    assert _record(engine, [_accepted(item, "rp-1")]) == [None]
    job = load(engine, job_id)
    assert (job.status, job.runpod_job_id) == (JobStatus.QUEUED, "rp-1")
    assert job.submitted_at is not None
    assert job.next_poll_at is not None
    assert (job.claim_token, job.claimed_until) == (None, None)
    (submission,) = job.submissions
    assert (submission.outcome, submission.runpod_job_id) == ("accepted", "rp-1")
    assert event_kinds(engine, job_id)[-1] == ("status", "queued")


def test_an_answer_for_a_job_cancelled_meanwhile_is_a_duplicate_to_cancel(
    engine: JobEngine,
) -> None:
    job_id = make_job(engine)
    item = _prepared(engine, job_id)
    with engine.db.session() as session:
        cancel_job(session, session.get_one(Job, job_id))
    assert _record(engine, [_accepted(item, "rp-2")]) == ["rp-2"]
    job = load(engine, job_id)
    assert (job.status, job.runpod_job_id, job.claim_token) == (JobStatus.CANCELLED, None, None)
    assert job.submissions[0].outcome == "accepted"
    assert event_kinds(engine, job_id)[-1] == ("duplicate_cancelled", "cancelled")


def test_a_recording_retried_after_its_commit_changes_nothing(engine: JobEngine) -> None:
    job_id = make_job(engine)
    answers = [_accepted(_prepared(engine, job_id), "rp-3")]
    _record(engine, answers)
    before = event_kinds(engine, job_id)
    assert _record(engine, answers) == [None]
    assert event_kinds(engine, job_id) == before
    assert load(engine, job_id).runpod_job_id == "rp-3"


def test_of_two_answers_for_one_job_in_a_group_the_second_is_a_duplicate(
    engine: JobEngine,
) -> None:
    job_id = make_job(engine)
    item = _prepared(engine, job_id)
    again = replace(item, token="another-attempt")
    assert _record(engine, [_accepted(item, "rp-4"), _accepted(again, "rp-5")]) == [None, "rp-5"]
    assert load(engine, job_id).runpod_job_id == "rp-4"
    kinds = [kind for kind, _ in event_kinds(engine, job_id)]
    assert kinds[-2:] == ["status", "duplicate_cancelled"]
