"""The seed's run and monitoring commands, verbatim, in a fresh directory.

Only the ports differ (free ones instead of 8000 and 5555) and REDIS_URL names a private
redis-server. Flower's HTTP API answers without authentication only with
FLOWER_UNAUTHENTICATED_API set (Flower 2); its web UI needs nothing.
"""

import os
import pty
import re
import select
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from app.devstack import start_process, stop_process, wait_http
from app.simulator.config import SimulatorConfig
from app.simulator.server import SimulatorServer
from tests.cli.helpers import in_directory
from tests.stack.processes import clean_env
from tests.stack.redis_server import RedisServer
from tests.stack.waiting import free_port, wait_until

pytestmark = pytest.mark.timeout(360)

WORKER = "celery -A app.celery_app worker --loglevel=info --concurrency=2"
API = "uvicorn app.main:app --reload"
FLOWER = "celery -A app.celery_app flower --port=5555"
PURGE = "celery -A app.celery_app purge"
MONITOR = "tail -f logs/app.log | grep RUNPOD"
SEED_PROMPT = "beautiful anime girl, detailed eyes"
DELAY = (
    "from app.tasks.runpod_tasks import generate_image_runpod_task\n"
    f"print(generate_image_runpod_task.delay(user_prompt={SEED_PROMPT!r}).id)"
)
QUEUES = ("high_priority", "tracking", "maintenance")


@dataclass
class Seed:
    """The seed's deployment in `folder`: its processes, their logs, and the ports used."""

    folder: Path
    env: dict[str, str]
    redis: RedisServer
    api_url: str
    flower_url: str
    processes: dict[str, "subprocess.Popen[bytes]"]

    def start(self, name: str, command: str) -> None:
        argv = shlex.split(command)
        self.processes[name] = start_process(
            argv, env=self.env, log_path=self.log(name), cwd=self.folder
        )

    def log(self, name: str) -> Path:
        return self.folder / "process-logs" / f"{name}.log"

    def tail(self) -> str:
        parts = []
        for name in self.processes:
            text = self.log(name).read_text(errors="replace").splitlines()[-30:]
            parts.append(f"--- {name}\n" + "\n".join(text))
        return "\n".join(parts)

    def python(self, code: str) -> str:
        done = subprocess.run(
            [sys.executable, "-c", code],
            cwd=self.folder,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout.strip()

    def flower(self, path: str) -> Any:
        response = httpx.get(f"{self.flower_url}{path}", timeout=30)
        response.raise_for_status()
        return response.json()

    def wait_completed(self, job_or_task_id: str) -> None:
        """Poll the API's status (it takes the job id or the seed task's id) until completed."""

        def completed() -> bool:
            url = f"{self.api_url}/api/v1/runpod/status/{job_or_task_id}"
            response = httpx.get(url, timeout=10)
            assert response.status_code == 200, response.text
            return bool(response.json()["status"] == "completed")

        wait_until(completed, timeout=120, what=f"{job_or_task_id} completed", details=self.tail)


@pytest.fixture
def seed(tmp_path: Path) -> Iterator[Seed]:
    with ExitStack() as cleanup:
        simulator = SimulatorServer(SimulatorConfig(workers=4, job_duration_ms=300, random_seed=3))
        simulator.start()
        cleanup.callback(simulator.stop)
        redis_server = RedisServer(tmp_path / "redis")
        redis_server.start()
        cleanup.callback(redis_server.stop)
        api_port = free_port()
        venv_bin = str(Path(sys.executable).parent)
        env = clean_env(
            REDIS_URL=redis_server.url,
            RUNPOD_URL=f"{simulator.base_url}/seed-endpoint/run",
            RUNPOD_API_KEY="seed-test-key",
            PUBLIC_BASE_URL=f"http://127.0.0.1:{api_port}",
            FLOWER_UNAUTHENTICATED_API="true",
            PATH=f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
        )
        deployment = Seed(
            folder=tmp_path,
            env=env,
            redis=redis_server,
            api_url=f"http://127.0.0.1:{api_port}",
            flower_url=f"http://127.0.0.1:{free_port()}",
            processes={},
        )

        def stop_all() -> None:
            # The whole process group: `--reload` runs the server in a child of the reloader.
            for process in deployment.processes.values():
                stop_process(process, kill=True)

        cleanup.callback(stop_all)
        yield deployment


def test_the_seed_commands_run_monitor_and_purge(seed: Seed) -> None:
    seed.start("worker", WORKER)
    seed.start("api", f"{API} --port {seed.api_url.rsplit(':', 1)[1]}")
    seed.start("flower", FLOWER.replace("5555", seed.flower_url.rsplit(":", 1)[1]))
    wait_http(f"{seed.api_url}/healthz", timeout=120)
    wait_http(f"{seed.flower_url}/healthcheck", timeout=120)

    # Flower lists the worker, with the seed's concurrency.
    def worker_listed() -> bool:
        workers = seed.flower("/api/workers?refresh=1")
        return any(
            name.startswith("celery@") and info.get("stats") for name, info in workers.items()
        )

    wait_until(
        worker_listed, timeout=90, interval=1, what="Flower lists the worker", details=seed.tail
    )
    [stats] = [info["stats"] for info in seed.flower("/api/workers").values()]
    assert stats["pool"]["max-concurrency"] == 2
    # Flower turns on the worker's task events a few seconds after it starts.
    wait_until(
        lambda: "enabled by remote" in seed.log("worker").read_text(),
        timeout=60,
        what="task events enabled",
        details=seed.tail,
    )

    monitor = Monitor(seed.folder)
    try:
        # The seed's curl, and the seed's `.delay`.
        posted = httpx.post(
            f"{seed.api_url}/api/v1/runpod/generate",
            json={"prompt": "beautiful anime girl"},
            timeout=30,
        )
        assert posted.status_code == 202, posted.text
        task_id = seed.python(DELAY)
        for ref in (posted.json()["id"], task_id):
            seed.wait_completed(ref)
        line = monitor.first_line(timeout=60)
    finally:
        monitor.stop()
    assert "[RUNPOD TASK]" in line

    # The worker process itself writes the task's lines to logs/app.log (only it runs tasks).
    log = (seed.folder / "logs" / "app.log").read_text()
    assert re.search(rf"\[RUNPOD TASK\] task {task_id} -> job job_\w+", log), log[-3000:]

    def task_in_flower() -> bool:
        task = seed.flower("/api/tasks").get(task_id)
        return bool(task and task.get("state") == "SUCCESS")

    wait_until(
        task_in_flower, timeout=60, interval=1, what="Flower shows the task", details=seed.tail
    )
    assert seed.flower("/api/tasks")[task_id]["name"].endswith("generate_image_runpod_task")

    # With the worker stopped, a task waits in Redis until `purge` removes it.
    stop_process(seed.processes["worker"])
    seed.python(DELAY)
    queued = redis.Redis.from_url(seed.redis.url)
    try:
        assert sum(queued.llen(queue) for queue in QUEUES) >= 1
        purged = subprocess.run(
            shlex.split(PURGE),
            cwd=seed.folder,
            env=seed.env,
            input="yes\n",
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )
        assert purged.returncode == 0, purged.stdout + purged.stderr
        assert re.search(r"Purged \d+ messages? from \d+ known task queues?", purged.stdout), (
            purged.stdout
        )
        assert sum(queued.llen(queue) for queue in QUEUES) == 0
    finally:
        queued.close()

    for name, process in seed.processes.items():
        stop_process(process)
        assert process.poll() is not None, name
    assert in_directory(seed.folder) == set()


class Monitor:
    """`tail -f logs/app.log | grep RUNPOD` with its output on a terminal, as a user sees it
    (grep buffers its output when it is not writing to one)."""

    def __init__(self, folder: Path) -> None:
        self._master, replica = pty.openpty()
        self.process = subprocess.Popen(
            ["/bin/sh", "-c", MONITOR],
            cwd=folder,
            stdout=replica,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        os.close(replica)

    def first_line(self, *, timeout: float) -> str:
        output = b""
        deadline = time.monotonic() + timeout
        while b"\n" not in output:
            left = deadline - time.monotonic()
            assert left > 0, f"no line from `{MONITOR}` within {timeout:g} s: {output!r}"
            ready, _, _ = select.select([self._master], [], [], min(left, 0.5))
            if ready:
                output += os.read(self._master, 4096)
        return output.decode(errors="replace").splitlines()[0]

    def stop(self) -> None:
        stop_process(self.process, kill=True)
        os.close(self._master)
