"""The security suite's fixtures and helpers: the in-process API of tests/api (development or
production settings), API keys, problem answers, and a resolver override at the DNS edge."""

import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from app.accounts.service import create_key
from app.core.config import Settings
from app.devstack import start_process, stop_process, wait_http
from app.jobs.models import Submission
from app.jobs.submit import submit_job
from tests.api.conftest import RunningApi, api, api_factory, api_strict
from tests.jobs.worker_stack import free_port
from tests.notify.conftest import receiver, receiver_server

__all__ = ["api", "api_factory", "api_strict", "receiver", "receiver_server"]

API = "/api/v1/runpod"
PROBLEM_JSON = "application/problem+json"


def new_key(api: RunningApi, name: str, *, admin: bool = False) -> tuple[str, str]:
    """A fresh API key: (its id, its plaintext)."""
    with api.engine.db.session() as session:
        key, plaintext = create_key(session, name=name, is_admin=admin)
        return key.id, plaintext


def bearer(plaintext: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {plaintext}"}


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The answer is `status` as `application/problem+json` with the stable `code`."""
    assert response.status_code == status, (response.status_code, response.text[:500])
    assert response.headers["content-type"] == PROBLEM_JSON, response.headers
    body: dict[str, Any] = response.json()
    assert (body["status"], body["code"]) == (status, code), body
    return body


async def submitted_job(
    api: RunningApi, prompt: str, headers: dict[str, str] | None = None
) -> tuple[str, str, str]:
    """A job accepted by the simulator: (job id, its submission's token, its RunPod id)."""
    body = {"prompt": prompt, "width": 256, "height": 256}
    response = await api.client.post(f"{API}/generate", json=body, headers=headers or {})
    assert response.status_code == 202, response.text
    job_id: str = response.json()["id"]
    await submit_job(api.engine, job_id)
    with api.engine.db.session() as session:
        [submission] = session.scalars(select(Submission).where(Submission.job_id == job_id))
        assert submission.runpod_job_id is not None
        return job_id, submission.token, submission.runpod_job_id


def process_env(**settings: object) -> dict[str, str]:
    """This process's environment without any Podrelay setting, plus `settings`."""
    ours = {name.upper() for name in Settings.model_fields}
    env = {key: value for key, value in os.environ.items() if key.upper() not in ours}
    env.update({name.upper(): str(value) for name, value in settings.items()})
    env["PYTHONUNBUFFERED"] = "1"
    return env


@contextmanager
def uvicorn_api(env: dict[str, str], log_path: Path, *, port: int | None = None) -> Iterator[str]:
    """The API as `uvicorn app.main:app` (access log on) on 127.0.0.1; yields its base URL."""
    port = port or free_port()
    argv = [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1"]
    process = start_process([*argv, "--port", str(port)], env=env, log_path=log_path)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/healthz", timeout=60)
        yield url
    finally:
        stop_process(process, kill=True)


class FakeDns:
    """Answers for made-up host names at `socket.getaddrinfo`; every other name resolves as
    usual. Only names the test invents are faked, and they never reach a real resolver.

    `names[name]` is the answer to every lookup; `then[name]`, when set, answers every
    lookup after the next one (a rebinding DNS server with a TTL of 0)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.names: dict[str, list[str]] = {}
        self.then: dict[str, list[str]] = {}
        self.lookups: list[str] = []
        real = socket.getaddrinfo

        def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
            name = host.decode() if isinstance(host, bytes) else host
            if name not in self.names:
                return real(host, port, *args, **kwargs)
            self.lookups.append(name)
            answer = self.names[name]
            if name in self.then:
                self.names[name] = self.then.pop(name)
            return [_address_info(address, int(port or 0)) for address in answer]

        monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def _address_info(address: str, port: int) -> tuple[Any, ...]:
    if ":" in address:
        return (socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, port, 0, 0))
    return (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, port))


@pytest.fixture
def fake_dns(monkeypatch: pytest.MonkeyPatch) -> FakeDns:
    return FakeDns(monkeypatch)
