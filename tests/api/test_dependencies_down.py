"""The API while the ledger's PostgreSQL or the Redis broker is down: the API under uvicorn,
the dependency stopped under it and started again, the API never restarted.

Down, what needs the dependency answers 503 with a stable code, `Retry-After` and one log
line (no traceback, no password); `/readyz` names it. Back, the same requests succeed.
"""

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.engine import make_url

from app.accounts.service import create_key
from app.api import examples
from app.api.errors import UNAVAILABLE_RETRY_AFTER_S
from app.jobs.engine import JobEngine
from app.jobs.models import Submission
from app.jobs.submit import submit_job
from app.simulator.server import SimulatorServer
from tests.stack.deployment import SMALL_PARAMS, WorkerStack
from tests.stack.factory import StackFactory
from tests.stack.http_api import API, assert_problem
from tests.stack.postgres_server import PostgresServer
from tests.stack.waiting import wait_until

DB_PASSWORD = "db-password-never-logged"
GENERATE = {"prompt": "a lighthouse at dusk", **SMALL_PARAMS}


@contextmanager
def stopped(stop: Callable[[], None], start: Callable[[], None]) -> Iterator[None]:
    """The dependency down for the block, up again after it (also when an assertion fails)."""
    stop()
    try:
        yield
    finally:
        start()


def assert_unavailable(response: httpx.Response, code: str) -> dict[str, Any]:
    body = assert_problem(response, 503, code)
    assert (body["retryable"], body["retry_after"]) == (True, UNAVAILABLE_RETRY_AFTER_S), body
    assert response.headers["Retry-After"] == f"{UNAVAILABLE_RETRY_AFTER_S:.0f}"
    return body


def assert_ready(client: httpx.Client, *, down: str | None) -> None:
    """200 with every check passing, or 503 with only `down` failing."""
    response = client.get("/readyz")
    checks = response.json()["checks"]
    failing = [name for name, check in checks.items() if not check["ok"]]
    assert failing == ([down] if down else []), checks
    assert response.status_code == (503 if down else 200), response.text


def accepted_job(client: httpx.Client) -> str:
    response = client.post(f"{API}/generate", json=GENERATE)
    assert response.status_code == 202, response.text
    job_id: str = response.json()["id"]
    return job_id


def logs_of(stack: WorkerStack) -> str:
    """What the stack's processes wrote to stderr, and LOG_FILE."""
    paths = [*stack.logs, stack.settings.log_file]
    return "\n".join(path.read_text(errors="replace") for path in paths if path and path.exists())


def test_the_database_down_is_503_database_unavailable_until_it_returns(
    private_postgres: PostgresServer, stacks: StackFactory, simulator: SimulatorServer
) -> None:
    stack = stacks.build(
        ledger="postgresql",
        broker="embedded",
        simulator=simulator,
        postgres_admin_url=private_postgres.admin_url,
        allow_anonymous=True,
    )
    # Trust authentication ignores it; the API must still never write it anywhere.
    url = make_url(str(stack.env["DATABASE_URL"])).set(password=DB_PASSWORD)
    stack.env["DATABASE_URL"] = url.render_as_string(hide_password=False)
    with stack.db.session() as session:
        _, plaintext = create_key(session, name="keyed")
    keyed = {"Authorization": f"Bearer {plaintext}"}
    with httpx.Client(base_url=stack.start_api(), timeout=15) as client:
        job_id = accepted_job(client)

        def ledger_requests() -> list[httpx.Response]:
            return [
                client.post(f"{API}/generate", json=GENERATE),  # the grouped insert
                client.post(f"{API}/generate", json=GENERATE, headers=keyed),  # the key lookup
                client.get(f"{API}/status/{job_id}"),
                client.get(f"{API}/jobs"),
            ]

        with stopped(private_postgres.stop, private_postgres.start):
            for response in ledger_requests():
                assert response.json() == examples.DATABASE_UNAVAILABLE
                assert_unavailable(response, "database_unavailable")
            assert_ready(client, down="database")

        assert [response.status_code for response in ledger_requests()] == [202, 202, 200, 200]
        assert_ready(client, down=None)
    logs = logs_of(stack)
    assert DB_PASSWORD not in logs
    assert "Traceback" not in logs, stack.tail()
    warnings = [line for line in logs.splitlines() if "answered 503 database_unavailable (" in line]
    assert len(warnings) == 4 * 2, warnings  # one line per answer, in stderr and LOG_FILE


async def _submit_in_process(stack: WorkerStack, job_id: str) -> str:
    """Submit the job to the simulator as a worker would; returns its webhook token."""
    engine = JobEngine.from_settings(stack.settings)
    try:
        await submit_job(engine, job_id)
        with engine.db.session() as session:
            submission = session.scalars(select(Submission).where(Submission.job_id == job_id))
            return submission.one().token
    finally:
        await engine.aclose()
        engine.db.dispose()


def test_redis_down_loses_no_job_and_a_webhook_it_cannot_follow_up_is_503(
    stacks: StackFactory, simulator: SimulatorServer
) -> None:
    redis_server = stacks.redis()
    stack = stacks.build(
        ledger="postgresql",
        broker="redis",
        redis_server=redis_server,
        simulator=simulator,
        allow_anonymous=True,
    )
    with httpx.Client(base_url=stack.start_api(), timeout=15) as client:
        finished = accepted_job(client)
        token = asyncio.run(_submit_in_process(stack, finished))
        [view] = stack.jobs(ids=[finished])
        assert view.runpod_job_id is not None
        runpod_body: dict[str, Any] = {}

        def completed_at_runpod() -> bool:
            runpod_body.update(stack.runpod_status(str(view.runpod_job_id)))
            return bool(runpod_body["status"] == "COMPLETED")

        wait_until(completed_at_runpod, timeout=15, what="the job completed at the simulator")
        webhook = f"/webhooks/runpod/{token}"

        with stopped(redis_server.stop, redis_server.start):
            # The job is committed before its message is queued; the tracker submits it later.
            during_outage = accepted_job(client)
            assert [job.status for job in stack.jobs(ids=[during_outage])] == ["pending"]
            # Applied to the ledger, but the image download it calls for cannot be queued.
            assert_unavailable(client.post(webhook, json=runpod_body), "broker_unavailable")
            assert_ready(client, down="broker")

        # RunPod retries the delivery; what it changed is already in the ledger.
        retried = client.post(webhook, json=runpod_body)
        assert retried.json() == {"received": True, "changed": False}, retried.text
        assert_ready(client, down=None)
        status = client.get(f"{API}/status/{finished}").json()["status"]
        assert status == "completed"

    # The worker's tracker submits the job accepted during the outage and stores the image
    # whose download could not be queued: nothing was lost.
    stack.start_worker(concurrency=2)
    jobs = stack.wait_settled(2, timeout=40)
    assert {job.id: job.status for job in jobs} == {
        finished: "completed",
        during_outage: "completed",
    }
    assert [image.state for job in jobs for image in job.images] == ["stored", "stored"]
    assert "Traceback" not in logs_of(stack), stack.tail()
