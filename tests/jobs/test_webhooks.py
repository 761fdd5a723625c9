"""RunPod webhooks: per-submission secrets, idempotence, ordering, orphans and duplicates."""

import base64
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from app.core.config import get_settings
from app.core.logging import redact_url_secrets
from app.jobs import service
from app.jobs.engine import JobEngine
from app.jobs.models import Job
from app.jobs.status import JobStatus
from app.jobs.webhooks import WebhookRejected, receive_runpod_webhooks
from app.simulator.server import SimulatorServer
from tests.jobs.helpers import load, make_job


def png_data_uri() -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 16), "teal").save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def completed(runpod_id: str) -> dict[str, Any]:
    return {
        "id": runpod_id,
        "status": "COMPLETED",
        "delayTime": 12,
        "executionTime": 340,
        "output": {"images": [png_data_uri()], "image_url": png_data_uri(), "seed": 5},
    }


def submitted(engine: JobEngine, *, runpod_id: str | None) -> tuple[str, str]:
    """A job with one submission; `runpod_id=None` stands for a /run whose answer was lost."""
    job_id = make_job(engine)
    with engine.db.session() as session:
        job = session.get_one(Job, job_id)
        submission = service.new_submission(session, job)
        submission.outcome = "accepted" if runpod_id else "ambiguous"
        submission.runpod_job_id = runpod_id
        if runpod_id:
            job.runpod_job_id = runpod_id
            service.move(session, job, JobStatus.QUEUED)
        return job_id, submission.token


def deliver(engine: JobEngine, token: str, payload: Any) -> Any:
    """One delivery in its own transaction; raises its rejection."""
    with engine.db.session() as session:
        [outcome] = receive_runpod_webhooks(session, [(token, payload)], store=engine.store)
    if isinstance(outcome, WebhookRejected):
        raise outcome
    return outcome


def test_completion_is_applied_once(engine: JobEngine) -> None:
    job_id, token = submitted(engine, runpod_id="rp-1")
    assert deliver(engine, token, completed("rp-1")).changed
    assert not deliver(engine, token, completed("rp-1")).changed
    job = load(engine, job_id)
    assert (job.status, job.delay_ms, job.execution_ms) == (JobStatus.COMPLETED, 12, 340)
    [image] = job.images
    assert (image.state, image.width, image.height, image.seed) == ("stored", 32, 16, 5)


def test_late_progress_never_moves_a_job_back(engine: JobEngine) -> None:
    job_id, token = submitted(engine, runpod_id="rp-2")
    deliver(engine, token, completed("rp-2"))
    assert not deliver(engine, token, {"id": "rp-2", "status": "IN_PROGRESS"}).changed
    assert load(engine, job_id).status == JobStatus.COMPLETED


def test_running_then_failed_in_order(engine: JobEngine) -> None:
    job_id, token = submitted(engine, runpod_id="rp-3")
    assert deliver(engine, token, {"id": "rp-3", "status": "IN_PROGRESS"}).changed
    failed = {"id": "rp-3", "status": "FAILED", "error": "CUDA out of memory"}
    assert deliver(engine, token, failed).changed
    job = load(engine, job_id)
    assert (job.status, job.error_code, job.error_message) == (
        JobStatus.FAILED,
        "worker_failed",
        "CUDA out of memory",
    )


@pytest.mark.parametrize(
    ("token", "payload", "code"),
    [
        ("not-a-known-token-at-all", {"id": "rp-4", "status": "COMPLETED"}, 404),
        (None, {"id": "someone-elses-job", "status": "COMPLETED"}, 409),
        (None, {"status": "COMPLETED"}, 400),
        (None, ["not", "an", "object"], 400),
    ],
)
def test_foreign_or_malformed_deliveries_are_rejected(
    engine: JobEngine, token: str | None, payload: Any, code: int
) -> None:
    job_id, own_token = submitted(engine, runpod_id="rp-4")
    with pytest.raises(WebhookRejected) as caught:
        deliver(engine, token or own_token, payload)
    assert caught.value.status_code == code
    assert load(engine, job_id).status == JobStatus.QUEUED


def test_orphan_of_a_lost_run_answer_is_adopted(engine: JobEngine) -> None:
    job_id, token = submitted(engine, runpod_id=None)
    outcome = deliver(engine, token, completed("rp-orphan"))
    assert outcome.changed
    assert not outcome.cancel_runpod_jobs
    job = load(engine, job_id)
    assert (job.status, job.runpod_job_id) == (JobStatus.COMPLETED, "rp-orphan")


def test_duplicate_that_finishes_first_wins_and_the_other_is_cancelled(engine: JobEngine) -> None:
    job_id, orphan_token = submitted(engine, runpod_id=None)
    with engine.db.session() as session:
        job = session.get_one(Job, job_id)
        retry = service.new_submission(session, job)
        retry.outcome, retry.runpod_job_id = "accepted", "rp-retry"
        job.runpod_job_id = "rp-retry"
        service.move(session, job, JobStatus.QUEUED)
        retry_token = retry.token
    outcome = deliver(engine, orphan_token, completed("rp-orphan"))
    assert [runpod_id for runpod_id, _ in outcome.cancel_runpod_jobs] == ["rp-retry"]
    assert load(engine, job_id).status == JobStatus.COMPLETED
    # The other job's own result, if it still arrives, is not a second result.
    assert not deliver(engine, retry_token, completed("rp-retry")).changed
    assert len(load(engine, job_id).images) == 1


def test_duplicate_still_running_is_cancelled(engine: JobEngine) -> None:
    job_id, orphan_token = submitted(engine, runpod_id=None)
    with engine.db.session() as session:
        job = session.get_one(Job, job_id)
        job.runpod_job_id = "rp-kept"
        service.move(session, job, JobStatus.QUEUED)
    outcome = deliver(engine, orphan_token, {"id": "rp-orphan", "status": "IN_PROGRESS"})
    assert [runpod_id for runpod_id, _ in outcome.cancel_runpod_jobs] == ["rp-orphan"]
    assert load(engine, job_id).runpod_job_id == "rp-kept"


@pytest.fixture
async def api(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, simulator: SimulatorServer
) -> AsyncIterator[tuple[httpx.AsyncClient, JobEngine]]:
    monkeypatch.setenv("RUNPOD_URL", f"{simulator.base_url}/hooks/run")
    monkeypatch.setenv("RUNPOD_API_KEY", "k")
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'api.db'}")
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MEDIA_DIR", str(tmp_path / "media"))
    monkeypatch.setenv("LOG_FILE", str(tmp_path / "app.log"))
    get_settings.cache_clear()
    from app.main import create_app

    application = create_app()
    async with (
        application.router.lifespan_context(application),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=application), base_url="http://api"
        ) as client,
    ):
        yield client, application.state.engine
    get_settings.cache_clear()


async def test_receiver_over_http(api: tuple[httpx.AsyncClient, JobEngine]) -> None:
    client, engine = api
    job_id, token = submitted(engine, runpod_id="rp-http")
    response = await client.post(f"/webhooks/runpod/{token}", json=completed("rp-http"))
    assert response.status_code == 200
    assert response.json() == {"received": True, "changed": True}
    again = await client.post(f"/webhooks/runpod/{token}", json=completed("rp-http"))
    assert again.json()["changed"] is False
    forged = await client.post(f"/webhooks/runpod/{'x' * 32}", json=completed("rp-http"))
    assert forged.status_code == 404
    assert forged.json()["code"] == "webhook_rejected"
    broken = await client.post(f"/webhooks/runpod/{token}", content=b"{not json")
    assert broken.status_code == 400
    assert load(engine, job_id).status == JobStatus.COMPLETED


def test_webhook_secrets_are_masked_in_log_lines() -> None:
    line = '127.0.0.1 - "POST /webhooks/runpod/AbC-123_xyz HTTP/1.1" 200'
    assert redact_url_secrets(line) == '127.0.0.1 - "POST /webhooks/runpod/*** HTTP/1.1" 200'
