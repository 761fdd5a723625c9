"""The security suite's helpers: a job RunPod accepted, and a resolver override at the DNS edge."""

import socket
from typing import Any

import pytest
from sqlalchemy import select

from app.jobs.models import Submission
from app.jobs.submit import submit_job
from tests.stack.http_api import API
from tests.stack.inprocess_api import RunningApi


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
