"""Secrets never reach a log or an answer: the RunPod API key, the clients' API keys (in
full), their webhook signing secrets and the per-submission RunPod webhook tokens.

The full flow runs the real processes (the API under uvicorn with its access log, a Celery
worker with beat, both at DEBUG) against a simulator that accepts only a distinctive RunPod
key, then reads every log file the stack wrote and every answer the API gave.
"""

import asyncio
import re
import secrets
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from app.jobs.models import Submission
from app.simulator.config import SimulatorConfig
from tests.cli.helpers import run_podrelay
from tests.stack.deployment import WorkerStack
from tests.stack.factory import StackFactory
from tests.stack.http_api import API, bearer, new_key
from tests.stack.inprocess_api import ApiFactory
from tests.stack.processes import uvicorn_api
from tests.stack.receiver import Receiver
from tests.stack.waiting import wait_until

RUNPOD_KEY = "rpa_SECURITYSUITE" + secrets.token_hex(16)
SIGNING_SECRET = "whsec_SECURITYSUITE" + secrets.token_hex(16)
SMALL = {"width": 256, "height": 256}


def cli(stack: WorkerStack, *args: str) -> str:
    """`podrelay ...` in its own process, on the stack's ledger."""
    done = run_podrelay(*args, env=stack.env, cwd=stack.folder, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


def create_key(stack: WorkerStack, name: str, *extra: str) -> dict[str, str]:
    """`podrelay keys create`: the key's id, API key and webhook secret, as printed once."""
    output = cli(stack, "keys", "create", name, *extra)
    found = {
        "id": re.search(r"\bkey_[0-9a-f]+\b", output),
        "key": re.search(r"\bprk_[\w-]{20,}", output),
        "webhook_secret": re.search(r"\bwhsec_[\w+/=-]{20,}", output),
    }
    assert all(found.values()), output
    return {name: match.group(0) for name, match in found.items() if match}


class Recorder:
    """Every answer the API gives, headers and body, for the scan at the end."""

    def __init__(self) -> None:
        self.answers: list[str] = []

    async def __call__(self, response: httpx.Response) -> None:
        await response.aread()
        headers = "\n".join(f"{name}: {value}" for name, value in response.headers.items())
        self.answers.append(f"{response.request.url}\n{headers}\n{response.text}")


async def wait_status(
    client: httpx.AsyncClient, job_id: str, headers: dict[str, str], wanted: set[str]
) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        view: dict[str, Any] = (await client.get(f"{API}/status/{job_id}", headers=headers)).json()
        images_done = all(image["state"] != "pending" for image in view["images"])
        if view["status"] in wanted and images_done:
            return view
        await asyncio.sleep(0.2)
    raise AssertionError(f"job {job_id} did not reach {wanted}")


async def test_no_secret_in_any_log_file_or_answer(
    stacks: StackFactory, receiver: Receiver
) -> None:
    simulator = stacks.simulator(
        SimulatorConfig(
            api_key=RUNPOD_KEY,
            workers=8,
            job_duration_ms=300,
            job_duration_jitter_ms=50,
            random_seed=3,
            webhook_retry_delay_s=0.2,
        )
    )
    stack = stacks.build(
        ledger="sqlite",
        broker="embedded",
        simulator=simulator,
        webhooks=True,
        runpod_api_key=RUNPOD_KEY,
        webhook_signing_secret=SIGNING_SECRET,
        allow_private_webhook_urls=True,  # the test's receiver is on 127.0.0.1
        log_level="DEBUG",
    )
    alice = create_key(stack, "alice")
    ops = create_key(stack, "ops", "--admin")
    bob = create_key(stack, "bob")
    assert cli(stack, "keys", "revoke", bob["id"]).strip() == f"revoked {bob['id']}"
    listing = cli(stack, "keys", "list")
    assert "alice" in listing

    api_log = stack.folder / "logs" / "api-uvicorn.log"
    recorder = Recorder()
    assert stack.api_port is not None
    with uvicorn_api(stack.env, api_log, port=stack.api_port) as url:
        stack.start_worker(concurrency=4)
        async with httpx.AsyncClient(
            base_url=url, timeout=30, event_hooks={"response": [recorder]}
        ) as client:
            await exercise(client, stack, receiver, alice, ops, bob)

    found = secrets_of(stack, {"alice": alice, "ops": ops, "bob": bob})
    logs = sorted(path for path in stack.folder.rglob("*.log") if path.is_file())
    texts = {str(path): path.read_text(errors="replace") for path in logs}
    texts["podrelay keys list"] = listing
    texts.update({f"answer {n}": answer for n, answer in enumerate(recorder.answers)})
    leaks = [
        f"{what} in {where}"
        for where, text in texts.items()
        for what, secret in found.items()
        if secret in text
    ]
    assert leaks == []
    assert_the_scan_saw_the_flow(texts, api_log)


def secrets_of(stack: WorkerStack, keys: dict[str, dict[str, str]]) -> dict[str, str]:
    """What must not be seen, by name: ours, each key's, and every submission's token."""
    found = {
        "the RunPod API key": RUNPOD_KEY,
        "the anonymous webhook signing secret": SIGNING_SECRET,
    }
    for who, key in keys.items():
        found[f"{who}'s API key"] = key["key"]
        found[f"{who}'s webhook secret"] = key["webhook_secret"]
    with stack.db.session() as session:
        tokens = session.scalars(select(Submission.token)).all()
    assert tokens
    found.update({f"submission token {n}": token for n, token in enumerate(tokens)})
    return found


async def exercise(
    client: httpx.AsyncClient,
    stack: WorkerStack,
    receiver: Receiver,
    alice: dict[str, str],
    ops: dict[str, str],
    bob: dict[str, str],
) -> None:
    """A job that completes (with a signed webhook), one that fails, one refused by RunPod,
    401s, admin calls, and every read route."""
    headers, admin = bearer(alice["key"]), bearer(ops["key"])
    body = {"prompt": "a lighthouse", **SMALL, "webhook_url": receiver.url()}
    done = (await client.post(f"{API}/generate", json=body, headers=headers)).json()
    view = await wait_status(client, done["id"], headers, {"completed"})
    assert (await client.get(view["images"][0]["url"], headers=headers)).status_code == 200
    wait_until(lambda: bool(receiver.requests), timeout=30, what="the client webhook arrives")
    assert receiver.requests[0].headers["webhook-signature"].startswith("v1,")

    stack.simulator.set_faults(fail_rate=1.0)
    failing = await client.post(f"{API}/generate", json={"prompt": "doomed"}, headers=headers)
    await wait_status(client, failing.json()["id"], headers, {"failed"})
    stack.simulator.set_faults(fail_rate=0.0)

    for path in ("/jobs", f"/jobs/{done['id']}/events", "/usage", f"/batches/bat_{'0' * 24}"):
        await client.get(f"{API}{path}", headers=headers)
    assert (await client.post(f"{API}/test", headers=admin)).json()["key_accepted"] is True
    assert (await client.get(f"{API}/queue/stats", headers=admin)).status_code == 200
    for refused in (bearer(bob["key"]), bearer(alice["key"][:-2]), {"X-API-Key": ops["key"] + "x"}):
        assert (await client.get(f"{API}/jobs", headers=refused)).status_code == 401
    forged = await client.post(f"/webhooks/runpod/{secrets.token_urlsafe(24)}", json={"id": "x"})
    assert forged.status_code == 404

    # RunPod now refuses the key: the refusals are reported without it.
    stack.simulator.set_faults(api_key=RUNPOD_KEY + "-rotated")
    test = (await client.post(f"{API}/test", headers=admin)).json()
    assert test["key_accepted"] is False
    refused_job = await client.post(f"{API}/generate", json={"prompt": "refused"}, headers=headers)
    await wait_status(client, refused_job.json()["id"], headers, {"failed"})
    assert (await client.get("/readyz")).status_code == 503
    assert (await client.get("/metrics")).status_code == 200


def assert_the_scan_saw_the_flow(texts: dict[str, str], api_log: Path) -> None:
    """The logs hold what happened (so the scan above was not of empty files)."""
    everything = "\n".join(texts.values())
    access = api_log.read_text()
    assert '"GET /api/v1/runpod/jobs HTTP/1.1" 401' in access
    assert '"POST /webhooks/runpod/*** HTTP/1.1" 200' in access  # RunPod's, token masked
    assert '"POST /webhooks/runpod/*** HTTP/1.1" 404' in access
    assert "[WEBHOOK]" in everything
    assert "delivered" in everything
    assert "-> failed" in everything
    assert "-> completed" in everything


async def test_an_error_while_authenticating_does_not_log_the_presented_key(
    api_factory: ApiFactory, capfd: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A failure deep in a request (here: the keys table is gone) is logged with its
    traceback; the presented key, a local of the frames it passes, must not be in it."""
    async with api_factory(ENVIRONMENT="production", RUNPOD_API_KEY=RUNPOD_KEY) as api:
        _, plaintext = new_key(api, "alice")
        with api.engine.db.engine.begin() as connection:
            connection.exec_driver_sql("ALTER TABLE api_keys RENAME TO api_keys_gone")
        transport = httpx.ASGITransport(app=api.app, raise_app_exceptions=False)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://podrelay.test"
        ) as client:
            response = await client.get(f"{API}/jobs", headers=bearer(plaintext))
        assert response.status_code == 500
        assert response.json()["code"] == "internal_error"
    captured = capfd.readouterr()
    log_file = (tmp_path / "logs" / "app.log").read_text()
    for where, text in (("stderr", captured.err), ("stdout", captured.out), ("LOG_FILE", log_file)):
        assert "unhandled error on GET" in text or where == "stdout", where
        assert plaintext not in text, where
        assert RUNPOD_KEY not in text, where
