"""`podrelay dev` (what `make run` starts) as a user runs it: the console script in a fresh
directory with free ports; a generation goes through; Ctrl-C stops every process it started."""

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import select

from app.core.db import Database
from app.devstack import start_process, stop_process, temporary_postgres_database, wait_http
from app.jobs.models import Job
from app.simulator.config import SimulatorConfig
from app.simulator.server import SimulatorServer
from tests.cli.helpers import cmdline, descendants, in_directory, in_sessions, running
from tests.stack.processes import clean_env
from tests.stack.redis_server import RedisServer
from tests.stack.waiting import free_port, wait_until

pytestmark = pytest.mark.timeout(300)

PODRELAY = str(Path(sys.executable).parent / "podrelay")  # the console script
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
STOP_GRACE_S = 10.0  # app.devstack's grace before SIGKILL
STATUS = "/api/v1/runpod/status/"


@contextmanager
def podrelay_dev(folder: Path, **settings: str) -> Iterator[tuple[str, "subprocess.Popen[bytes]"]]:
    """`podrelay dev --port <free>` in `folder`; yields the API's URL once it answers."""
    port = free_port()
    dev = start_process(
        [PODRELAY, "dev", "--port", str(port)],
        env=clean_env(**settings),
        log_path=folder / "dev.log",
        cwd=folder,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", timeout=120)
        yield f"http://127.0.0.1:{port}", dev
    finally:
        stop_process(dev, kill=True)


def generate_and_wait(url: str, details: Path) -> dict[str, Any]:
    """The seed's request, then the job once it completed with its image stored."""
    submitted = httpx.post(
        f"{url}/api/v1/runpod/generate",
        json={"prompt": "beautiful anime girl", "width": 256, "height": 256},
        timeout=30,
    )
    assert submitted.status_code == 202, submitted.text
    status_url = f"{url}{STATUS}{submitted.json()['id']}"

    def stored() -> bool:
        job = httpx.get(status_url, timeout=10).json()
        assert job["status"] in {"pending", "queued", "running", "completed"}, job
        return bool(job["status"] == "completed" and job["images"][0]["state"] == "stored")

    wait_until(stored, timeout=90, what="the job completed", details=details.read_text)
    job: dict[str, Any] = httpx.get(status_url, timeout=10).json()
    image = httpx.get(f"{url}{job['images'][0]['url']}", timeout=10)
    assert image.content.startswith(PNG_MAGIC)
    return job


def interrupt_and_check(dev: "subprocess.Popen[bytes]", folder: Path) -> None:
    """Ctrl-C: exit status 0 within the grace period, and no process left behind."""
    children = descendants(dev.pid)
    sessions = {pid for pid in children if os.getsid(pid) == pid}
    interrupted = time.monotonic()
    os.kill(dev.pid, signal.SIGINT)
    assert dev.wait(timeout=STOP_GRACE_S + 20) == 0, (folder / "dev.log").read_text()[-3000:]
    assert time.monotonic() - interrupted < STOP_GRACE_S + 5
    assert [pid for pid in children if running(pid)] == []
    assert in_sessions(sessions) == set()
    assert in_directory(folder) == set()


def service_commands(dev: "subprocess.Popen[bytes]") -> list[str]:
    return [cmdline(pid) for pid in descendants(dev.pid)]


def test_dev_runs_the_stack_and_ctrl_c_stops_every_process(tmp_path: Path) -> None:
    with podrelay_dev(tmp_path, SIMULATOR_PORT=str(free_port())) as (url, dev):
        generate_and_wait(url, tmp_path / "dev.log")
        commands = service_commands(dev)
        for service in ("app.cli simulator", "uvicorn app.main:app", "celery -A app.celery_app"):
            assert any(service in command for command in commands), (service, commands)
        sessions = [pid for pid in descendants(dev.pid) if os.getsid(pid) == pid]
        assert len(sessions) == 3, commands  # simulator, API and worker, each in its own session
        interrupt_and_check(dev, tmp_path)

    output = (tmp_path / "dev.log").read_text()
    assert f"Playground        {url}/" in output
    for prefix in ("simulator| ", "api      | ", "worker   | "):
        assert prefix in output
    assert "Traceback" not in output
    assert (tmp_path / "data" / "podrelay.db").is_file()  # the defaults, under the directory


def test_killing_dev_stops_every_process_it_started(tmp_path: Path) -> None:
    with podrelay_dev(tmp_path, SIMULATOR_PORT=str(free_port())) as (_, dev):
        sessions = {pid for pid in descendants(dev.pid) if os.getsid(pid) == pid}
        assert len(sessions) == 3, service_commands(dev)
        os.kill(dev.pid, signal.SIGKILL)  # dev alone: its children are in sessions of their own
        dev.wait(timeout=10)
        try:
            wait_until(
                lambda: not in_sessions(sessions),
                timeout=STOP_GRACE_S + 20,
                what="the children of a killed podrelay dev stop",
                details=lambda: "\n".join(cmdline(pid) for pid in in_sessions(sessions)),
            )
        finally:  # what a failure leaves running
            for pid in in_sessions(sessions):
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
    assert in_directory(tmp_path) == set()


def test_dev_uses_the_configured_runpod_redis_and_database(tmp_path: Path) -> None:
    with (
        SimulatorServer(SimulatorConfig(workers=2, job_duration_ms=300)) as runpod,
        temporary_postgres_database("podrelay_dev") as database_url,
    ):
        broker = RedisServer(tmp_path / "redis")
        broker.start()
        try:
            settings = {
                "RUNPOD_URL": f"{runpod.base_url}/my-endpoint/run",
                "RUNPOD_API_KEY": "rp_test_key",
                "REDIS_URL": broker.url,
                "DATABASE_URL": database_url,
                "RUNPOD_POLL_INTERVAL": "1",
            }
            with podrelay_dev(tmp_path, **settings) as (url, dev):
                job = generate_and_wait(url, tmp_path / "dev.log")
                commands = service_commands(dev)
                assert not any("app.cli simulator" in command for command in commands), commands
                assert runpod.counters()["jobs_created"] == 1
                ledger = Database(database_url)
                with ledger.session() as session:
                    assert (
                        session.scalar(select(Job.status).where(Job.id == job["id"])) == "completed"
                    )
                ledger.dispose()
                keys = redis.Redis.from_url(broker.url).keys("_kombu.binding.*")
                assert b"_kombu.binding.high_priority" in keys
                interrupt_and_check(dev, tmp_path)
        finally:
            broker.stop()
        output = (tmp_path / "dev.log").read_text()
        assert f"RunPod target     {runpod.base_url}/my-endpoint\n" in output
    assert "Broker            Redis (REDIS_URL)" in output
    assert not (tmp_path / "data" / "podrelay.db").exists()


@contextmanager
def socket_in_use() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_dev_stops_everything_when_a_child_cannot_start(tmp_path: Path) -> None:
    with socket_in_use() as api_port:
        log = tmp_path / "dev.log"
        dev = start_process(
            [PODRELAY, "dev", "--port", str(api_port)],
            env=clean_env(SIMULATOR_PORT=str(free_port())),
            log_path=log,
            cwd=tmp_path,
        )
        try:
            code = dev.wait(timeout=120)
        finally:
            stop_process(dev, kill=True)
    output = log.read_text()
    assert code != 0, output
    assert "[api] exited with status" in output
    assert "stopping" in output
    assert in_directory(tmp_path) == set()
