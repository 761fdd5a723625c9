"""Client webhooks end to end: a real receiver on 127.0.0.1, the ledger on SQLite and PostgreSQL."""

import asyncio
import base64
import hashlib
import hmac
import time
from concurrent.futures import ThreadPoolExecutor, wait
from datetime import datetime, timedelta

import pytest
from loguru import logger
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError as StockVerificationError

from app.accounts.service import create_key
from app.api.views import batch_out, job_out
from app.core.config import get_settings
from app.core.db import utcnow
from app.jobs import service
from app.jobs.cancel import cancel_job
from app.jobs.engine import JobEngine
from app.jobs.models import Batch, Job, JobImage
from app.jobs.status import JobStatus
from app.jobs.submit import submit_job
from app.jobs.tracking import tick
from app.media import signing
from app.notify.deliveries import deliver_due
from app.notify.models import WebhookDelivery
from app.notify.signing import new_secret, sign, signed_headers, signing_key, standard_secret
from tests.factories import add_job
from tests.stack.ledger import EngineFactory
from tests.stack.receiver import Received, Receiver

ANONYMOUS = "anonymous"


def anonymous_secret(engine: JobEngine) -> str:
    return engine.settings.webhook_signing_secret.get_secret_value()


def make_job(
    engine: JobEngine, url: str, *, owner: str = ANONYMOUS, batch_id: str | None = None
) -> str:
    with engine.db.session() as session:
        batch = session.get_one(Batch, batch_id) if batch_id else None
        index = len(batch.jobs) if batch else None
        return add_job(
            session, owner=owner, batch_id=batch_id, batch_index=index, webhook_url=url
        ).id


def finish(engine: JobEngine, job_id: str, status: JobStatus) -> None:
    with engine.db.session() as session:
        job = session.get_one(Job, job_id)
        code = None if status is JobStatus.COMPLETED else f"test_{status.value}"
        assert service.move(session, job, status, error_code=code, message=code)


def deliveries(engine: JobEngine, **where: str) -> list[WebhookDelivery]:
    query = select(WebhookDelivery).order_by(WebhookDelivery.created_at, WebhookDelivery.id)
    for column, value in where.items():
        query = query.where(getattr(WebhookDelivery, column) == value)
    with engine.db.session() as session:
        return list(session.scalars(query))


def only_delivery(engine: JobEngine, job_id: str) -> WebhookDelivery:
    [delivery] = deliveries(engine, job_id=job_id)
    return delivery


def make_due(engine: JobEngine, delivery_id: str) -> None:
    """Let the retry's wait pass."""
    with engine.db.session() as session:
        row = session.get_one(WebhookDelivery, delivery_id)
        row.next_attempt_at = utcnow() - timedelta(seconds=1)


def by_hand(secret: str, request: Received) -> str:
    """The specification's algorithm, written out independently of app.notify.signing."""
    signed = (
        request.headers["webhook-id"].encode()
        + b"."
        + request.headers["webhook-timestamp"].encode()
        + b"."
        + request.body
    )
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def assert_signed(secret: str, request: Received) -> None:
    Webhook(secret).verify(request.body, request.headers)  # a stock verifier
    assert request.headers["webhook-signature"] == by_hand(secret, request)
    assert request.headers["content-type"] == "application/json"
    assert abs(int(request.headers["webhook-timestamp"]) - time.time()) < 60


# --- signing, without the ledger ------------------------------------------------------------


def test_secrets_are_standard_and_stock_verifiers_accept_the_signatures() -> None:
    secret, body, now = new_secret(), b'{"type":"job.completed"}', int(time.time())
    assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 32
    headers = signed_headers(secret, "msg_1", now, body)
    assert Webhook(secret).verify(body, headers) == {"type": "job.completed"}
    rotated = {**headers, "webhook-signature": f"v1,bm90IGl0 {headers['webhook-signature']}"}
    Webhook(secret).verify(body, rotated)  # any matching entry will do
    bad = [
        ({**headers, "webhook-signature": "v1,bm90IGl0"}, body),
        (headers, body + b" "),
        (signed_headers(secret, "msg_1", now - 301, body), body),  # five minutes ago and more
        (signed_headers(secret, "msg_1", now + 301, body), body),  # from the future
        ({**headers, "webhook-timestamp": "soon"}, body),
        ({"webhook-id": "msg_1"}, body),
    ]
    for bad_headers, bad_body in bad:
        with pytest.raises(StockVerificationError):
            Webhook(secret).verify(bad_body, bad_headers)
    with pytest.raises(StockVerificationError):
        Webhook(new_secret()).verify(body, headers)


def test_an_older_secret_keeps_its_key_and_has_a_standard_form() -> None:
    """Secrets made before the standard form were used as the UTF-8 bytes of the whole
    string: receivers that hold one keep verifying, and stock verifiers take its standard form."""
    older = "whsec_" + "Qk3x-podrelay_older-secret-made-by-token_url"[:43]
    body = b'{"type":"job.failed"}'
    header = sign(older, "msg_1", 1_700_000_000, body)
    digest = hmac.new(older.encode(), b"msg_1.1700000000." + body, hashlib.sha256).digest()
    assert header == "v1," + base64.b64encode(digest).decode()
    assert signing_key(standard_secret(older)) == older.encode()
    now = int(time.time())
    headers = signed_headers(older, "msg_2", now, body)
    Webhook(standard_secret(older)).verify(body, headers)
    assert standard_secret(standard_secret(older)) == standard_secret(older)
    with pytest.raises(ValueError, match="empty"):
        signing_key("")


# --- delivery -------------------------------------------------------------------------------


async def test_completed_job_sends_one_signed_post(engine: JobEngine, receiver: Receiver) -> None:
    with engine.db.session() as session:
        key, _ = create_key(session, name="client")
        owner, secret = key.id, key.webhook_secret
    assert secret.startswith("whsec_")
    job_id = make_job(engine, receiver.url(), owner=owner)
    await submit_job(engine, job_id)
    deadline = time.monotonic() + 15
    while only_delivery_or_none(engine, job_id) != "delivered":
        assert time.monotonic() < deadline, "job.completed was not delivered by the tracker"
        await tick(engine)  # the tracker's pass polls, stores the image, then delivers
        await asyncio.sleep(0.02)
    for _ in range(3):  # nothing more is sent later
        await deliver_due(engine)

    [request] = receiver.requests
    assert request.path == "/hook"
    assert_signed(secret, request)
    with pytest.raises(StockVerificationError):
        Webhook(anonymous_secret(engine)).verify(request.body, request.headers)
    payload = request.json()
    assert payload["type"] == "job.completed"
    data = payload["data"]
    assert (data["id"], data["status"], data["error"], data["batch_id"]) == (
        job_id,
        "completed",
        None,
        None,
    )
    [image] = data["images"]
    assert image["url"] == f"/api/v1/runpod/images/{image['id']}"
    # A URL the receiver can hand to a browser: signed for the image, until the time it says.
    expires = int(image["signed_url"].split("expires=")[1].split("&")[0])
    assert image["signed_url"].startswith(f"/api/v1/runpod/media/{image['id']}?expires=")
    assert datetime.fromisoformat(image["signed_url_expires_at"]).timestamp() == expires
    settings = get_settings()
    sig = image["signed_url"].split("sig=")[1]
    assert signing.check(settings.media_url_secret.get_secret_value(), image["id"], expires, sig)
    assert image["state"] == "stored"  # sent once the image was kept, so its URL works
    assert data["timings"]["finished_at"] is not None
    assert data["timings"]["execution_ms"] is not None
    delivery = only_delivery(engine, job_id)
    assert request.headers["webhook-id"] == delivery.id
    assert (delivery.event, delivery.attempts, delivery.owner) == ("job.completed", 1, owner)
    assert delivery.delivered_at is not None
    [attempt] = delivery.attempt_log
    assert attempt["status_code"] == 200
    assert attempt["error"] is None
    assert attempt["duration_ms"] >= 0


def only_delivery_or_none(engine: JobEngine, job_id: str) -> str | None:
    rows = deliveries(engine, job_id=job_id)
    assert len(rows) <= 1
    return rows[0].state if rows else None


async def test_completed_waits_for_pending_images(engine: JobEngine, receiver: Receiver) -> None:
    job_id = make_job(engine, receiver.url())
    with engine.db.session() as session:
        session.add(
            JobImage(id="img_wait", job_id=job_id, index=0, state="pending", download_attempts=0)
        )
        job = session.get_one(Job, job_id)
        service.move(session, job, JobStatus.COMPLETED)
    assert await deliver_due(engine) == 0
    assert receiver.requests == []
    delivery = only_delivery(engine, job_id)
    assert delivery.attempts == 0
    assert delivery.payload["data"]["images"][0]["state"] == "pending"
    with engine.db.session() as session:
        session.get_one(JobImage, "img_wait").state = "stored"
    make_due(engine, delivery.id)
    assert await deliver_due(engine) == 1
    [request] = receiver.requests
    assert request.json()["data"]["images"][0]["state"] == "stored"
    assert only_delivery(engine, job_id).state == "delivered"


async def test_server_error_is_retried_with_backoff_and_every_attempt_shown(
    engine: JobEngine, receiver: Receiver
) -> None:
    logged: list[str] = []
    sink = logger.add(logged.append, format="{message}")
    try:
        receiver.answer(500)
        job_id = make_job(engine, receiver.url("/hook?token=url-token-xyz"))
        finish(engine, job_id, JobStatus.FAILED)

        assert await deliver_due(engine) == 1
        delivery = only_delivery(engine, job_id)
        assert (delivery.state, delivery.attempts) == ("pending", 1)
        assert delivery.next_attempt_at is not None
        wait = (delivery.next_attempt_at - utcnow()).total_seconds()
        assert 8 < wait <= 10
        assert await deliver_due(engine) == 0  # not due yet
        make_due(engine, delivery.id)
        assert await deliver_due(engine) == 1
    finally:
        logger.remove(sink)

    first, second = receiver.requests
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == delivery.id
    assert first.body == second.body
    for request in (first, second):
        assert_signed(anonymous_secret(engine), request)
    assert first.json()["type"] == "job.failed"
    assert first.json()["data"]["error"] == {"code": "test_failed", "message": "test_failed"}
    delivery = only_delivery(engine, job_id)
    assert (delivery.state, delivery.attempts, delivery.next_attempt_at) == ("delivered", 2, None)
    assert [a["status_code"] for a in delivery.attempt_log] == [500, 200]
    assert delivery.attempt_log[0]["error"] == "HTTP 500"

    with engine.db.session() as session:
        view = job_out(session.get_one(Job, job_id), price_per_second=0.0)
    [shown] = view.webhook_deliveries
    assert (shown.id, shown.event, shown.state, shown.attempts) == (
        delivery.id,
        "job.failed",
        "delivered",
        2,
    )
    assert (shown.last_status_code, shown.last_error) == (200, None)
    assert [a.status_code for a in shown.attempt_log] == [500, 200]
    assert shown.delivered_at is not None
    assert "webhook_deliveries" in view.model_dump(mode="json")

    text = "\n".join(logged)
    assert delivery.id in text  # the attempts were logged...
    assert anonymous_secret(engine) not in text  # ...without the secret
    assert "url-token-xyz" not in text  # ...or the URL's query


async def test_attempts_run_out_after_the_configured_number(
    make_engine: EngineFactory, receiver: Receiver
) -> None:
    engine = make_engine(allow_private_webhook_urls=True, client_webhook_attempts=3)
    receiver.answer(503, 503, 503)
    job_id = make_job(engine, receiver.url())
    finish(engine, job_id, JobStatus.TIMED_OUT)
    waits = []
    for _ in range(3):
        assert await deliver_due(engine) == 1
        delivery = only_delivery(engine, job_id)
        if delivery.next_attempt_at is not None:
            waits.append(round((delivery.next_attempt_at - utcnow()).total_seconds()))
            make_due(engine, delivery.id)
    assert waits == [10, 20]  # doubling
    delivery = only_delivery(engine, job_id)
    assert (delivery.state, delivery.attempts, delivery.next_attempt_at) == ("failed", 3, None)
    assert [a["status_code"] for a in delivery.attempt_log] == [503, 503, 503]
    assert await deliver_due(engine) == 0
    assert len(receiver.requests) == 3
    assert receiver.requests[0].json()["type"] == "job.timed_out"


async def test_redirect_is_a_failed_attempt(engine: JobEngine, receiver: Receiver) -> None:
    receiver.answer(302, headers={"location": receiver.url("/elsewhere")})
    job_id = make_job(engine, receiver.url())
    finish(engine, job_id, JobStatus.FAILED)
    assert await deliver_due(engine) == 1
    assert [request.path for request in receiver.requests] == ["/hook"]  # not followed
    delivery = only_delivery(engine, job_id)
    assert (delivery.state, delivery.attempts) == ("pending", 1)
    [attempt] = delivery.attempt_log
    assert attempt["status_code"] == 302
    assert "redirect" in attempt["error"]
    assert delivery.delivered_at is None


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_private_address_is_refused_at_send_time(
    make_engine: EngineFactory, receiver: Receiver, host: str
) -> None:
    # Accepted earlier (say the name resolved elsewhere then); refused when it is sent.
    engine = make_engine(allow_private_webhook_urls=False)
    assert not engine.settings.private_webhook_urls_allowed
    job_id = make_job(engine, receiver.url(host=host))
    finish(engine, job_id, JobStatus.FAILED)
    assert await deliver_due(engine) == 1
    assert receiver.requests == []
    delivery = only_delivery(engine, job_id)
    assert (delivery.state, delivery.attempts, delivery.next_attempt_at) == ("failed", 1, None)
    [attempt] = delivery.attempt_log
    assert attempt["status_code"] is None
    assert attempt["error"].startswith("refused:")
    assert "non-public" in attempt["error"]
    assert await deliver_due(engine) == 0  # not retried


async def test_owner_without_a_secret_is_not_sent_unsigned(
    engine: JobEngine, receiver: Receiver
) -> None:
    job_id = make_job(engine, receiver.url(), owner="key_gone")
    finish(engine, job_id, JobStatus.FAILED)
    assert await deliver_due(engine) == 1
    assert receiver.requests == []
    delivery = only_delivery(engine, job_id)
    assert delivery.state == "failed"
    assert delivery.attempt_log[0]["error"] == "no signing secret for the job's owner"


async def test_cancelled_job_sends_job_cancelled(engine: JobEngine, receiver: Receiver) -> None:
    job_id = make_job(engine, receiver.url())
    with engine.db.session() as session:
        cancel_job(session, session.get_one(Job, job_id))
    assert await deliver_due(engine) == 1
    [request] = receiver.requests
    assert_signed(anonymous_secret(engine), request)
    payload = request.json()
    assert (payload["type"], payload["data"]["status"]) == ("job.cancelled", "cancelled")
    assert payload["data"]["error"]["code"] == "cancelled"


async def test_job_without_webhook_url_queues_nothing(engine: JobEngine) -> None:
    job_id = make_job(engine, "http://127.0.0.1:9/hook")
    with engine.db.session() as session:
        session.get_one(Job, job_id).webhook_url = None
    finish(engine, job_id, JobStatus.FAILED)
    assert deliveries(engine) == []


async def test_batch_completed_once_after_the_last_job(
    engine: JobEngine, receiver: Receiver
) -> None:
    with engine.db.session() as session:
        batch = service.create_batch(session, owner=ANONYMOUS, size=3)
        batch.webhook_url = receiver.url("/batch-done")
        batch_id = batch.id
    jobs = [make_job(engine, receiver.url("/batch"), batch_id=batch_id) for _ in range(3)]
    for job_id, status in zip(jobs[:2], [JobStatus.COMPLETED, JobStatus.FAILED], strict=True):
        finish(engine, job_id, status)
        await deliver_due(engine)
    assert deliveries(engine, event="batch.completed") == []
    finish(engine, jobs[2], JobStatus.CANCELLED)
    assert await deliver_due(engine) == 2
    for _ in range(2):
        await deliver_due(engine)

    events = [request.json()["type"] for request in receiver.requests]
    assert events[:2] == ["job.completed", "job.failed"]
    assert sorted(events[2:]) == ["batch.completed", "job.cancelled"]  # sent concurrently
    [last] = [request for request in receiver.requests if request.path == "/batch-done"]
    assert_signed(anonymous_secret(engine), last)
    data = last.json()["data"]
    assert data["id"] == batch_id
    assert data["counts"] == {"cancelled": 1, "completed": 1, "failed": 1}
    assert sorted(job["id"] for job in data["jobs"]) == sorted(jobs)
    [delivery] = deliveries(engine, event="batch.completed")
    assert (delivery.batch_id, delivery.job_id, delivery.state) == (batch_id, None, "delivered")
    with engine.db.session() as session:
        view = batch_out(session.get_one(Batch, batch_id), price_per_second=0.0)
    assert [d.event for d in view.webhook_deliveries] == ["batch.completed"]
    assert [d.event for job in view.jobs for d in job.webhook_deliveries] == [
        "job.completed",
        "job.failed",
        "job.cancelled",
    ]


async def test_batch_jobs_ending_concurrently_queue_batch_completed_once(
    engine: JobEngine,
) -> None:
    with engine.db.session() as session:
        batch = service.create_batch(session, owner=ANONYMOUS, size=2)
        batch.webhook_url = "http://127.0.0.1:9/batch"
        batch_id = batch.id
    first, second = (make_job(engine, "http://127.0.0.1:9/b", batch_id=batch_id) for _ in "ab")
    with ThreadPoolExecutor(max_workers=1) as pool:
        with engine.db.session() as session:
            service.move(session, session.get_one(Job, first), JobStatus.COMPLETED)
            session.flush()  # the first job's transaction holds its changes, uncommitted...
            other = pool.submit(finish, engine, second, JobStatus.COMPLETED)
            wait([other], timeout=0.3)  # ...while the second job ends in another transaction
        other.result(timeout=10)
    assert len(deliveries(engine, event="batch.completed")) == 1
    assert len(deliveries(engine, batch_id=batch_id)) == 3
