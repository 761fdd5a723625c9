"""Real processes for the worker tests: Celery workers, the API, a private Redis, and a ledger.

A `WorkerStack` is one isolated Podrelay deployment: its own DATA_DIR, its own database (a
SQLite file, or a fresh PostgreSQL database), its own broker (the embedded one, or a private
`redis-server` on a free port), free ports, and a simulator started in the test process.
The test process sends tasks through a Celery app built from the same settings the children
read from their environment, and reads the ledger directly. `StackFactory.close()` stops every
process it started, then the Redis server and the simulator, then drops the database.
"""

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx
import redis
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from app.celery_app import create_celery
from app.core.config import Settings
from app.core.db import Database, utcnow
from app.core.migrate import upgrade_database
from app.devstack import (
    PG_ADMIN_URL,
    start_process,
    stop_process,
    temporary_postgres_database,
    wait_http,
    worker_argv,
)
from app.jobs.models import Job, JobEvent, JobImage
from app.jobs.status import TERMINAL, JobStatus
from app.media import open_store
from app.simulator.config import SimulatorConfig
from app.simulator.server import SimulatorServer

TASKS = "app.tasks.runpod_tasks"
GENERATE = f"{TASKS}.generate_image_runpod_task"
GENERATE_BATCH = f"{TASKS}.generate_image_batch_task"
SMALL_PARAMS: dict[str, Any] = {"width": 256, "height": 256}
ENDPOINT_ID = "podrelay-worker-test"
API_KEY = "worker-test-key"
_TERMINAL_VALUES = frozenset(status.value for status in TERMINAL)

Ledger = Literal["sqlite", "postgresql"]
Broker = Literal["embedded", "redis"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(
    check: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    interval: float = 0.25,
    details: Callable[[], str] | None = None,
) -> None:
    """Poll `check` until it holds; fail with `what` (and `details()`) after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return
        if time.monotonic() > deadline:
            extra = f"\n{details()}" if details is not None else ""
            raise AssertionError(f"{what}: not reached within {timeout:g} s{extra}")
        time.sleep(interval)


class RedisServer:
    """A private, non-persistent `redis-server` on a free port (never the system one)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        if self.process is not None and self.process.poll() is None:
            raise RuntimeError("redis-server is already running")
        self.starts += 1
        argv = [
            "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--daemonize", "no",
            "--dir", str(self.folder),
        ]  # fmt: skip
        self.folder.mkdir(parents=True, exist_ok=True)
        self.process = start_process(
            argv, env=dict(os.environ), log_path=self.folder / f"redis-{self.starts}.log"
        )
        client = redis.Redis(port=self.port, socket_timeout=1.0)
        try:
            wait_until(self._answers(client), timeout=15, what="redis-server answers PING")
        finally:
            client.close()

    def _answers(self, client: redis.Redis) -> Callable[[], bool]:
        def ping() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"redis-server exited with {self.process.returncode}")
            try:
                return bool(client.ping())
            except redis.RedisError:
                return False

        return ping

    def kill(self) -> None:
        """SIGKILL: everything it held is gone (it keeps nothing on disk)."""
        if self.process is not None:
            stop_process(self.process, kill=True)
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
            self.process = None


@dataclass(frozen=True)
class Progress:
    jobs: int
    accepted: int
    terminal: int
    pending_images: int


@dataclass(frozen=True)
class ImageView:
    state: str
    storage_key: str | None
    source_url: str | None


@dataclass(frozen=True)
class SubmissionView:
    token: str
    outcome: str
    runpod_job_id: str | None


@dataclass(frozen=True)
class JobView:
    """A job as the ledger holds it, read in one session."""

    id: str
    status: str
    error_code: str | None
    error_message: str | None
    prompt: str
    runpod_job_id: str | None
    celery_task_id: str | None
    batch_id: str | None
    batch_index: int | None
    attempts: int
    images: tuple[ImageView, ...]
    submissions: tuple[SubmissionView, ...]
    # (kind, status, message, data) of every event, in order.
    events: tuple[tuple[str, str | None, str | None, Any], ...]

    @property
    def terminal(self) -> bool:
        return self.status in _TERMINAL_VALUES

    @property
    def terminal_events(self) -> list[tuple[str, str | None, str | None, Any]]:
        return [e for e in self.events if e[0] == "status" and e[1] in _TERMINAL_VALUES]

    @property
    def settled(self) -> bool:
        """Terminal, and no image download still to come."""
        return self.terminal and all(image.state != "pending" for image in self.images)


def _view(job: Job, events: list[JobEvent]) -> JobView:
    return JobView(
        id=job.id,
        status=job.status,
        error_code=job.error_code,
        error_message=job.error_message,
        prompt=job.prompt,
        runpod_job_id=job.runpod_job_id,
        celery_task_id=job.celery_task_id,
        batch_id=job.batch_id,
        batch_index=job.batch_index,
        attempts=job.attempts,
        images=tuple(ImageView(i.state, i.storage_key, i.source_url) for i in job.images),
        submissions=tuple(
            SubmissionView(s.token, s.outcome, s.runpod_job_id) for s in job.submissions
        ),
        events=tuple((e.kind, e.status, e.message, e.data) for e in events),
    )


class WorkerStack:
    """One isolated deployment; build it with `StackFactory.build`."""

    def __init__(
        self,
        *,
        folder: Path,
        simulator: SimulatorServer,
        database_url: str,
        redis_url: str | None,
        overrides: dict[str, Any],
        api_port: int | None = None,
    ) -> None:
        self._born = time.monotonic()
        self.folder = folder
        self.api_port = api_port
        self.simulator = simulator
        self.values: dict[str, Any] = {
            "environment": "testing",
            "runpod_url": f"{simulator.base_url}/{ENDPOINT_ID}/run",
            "runpod_api_key": API_KEY,
            "database_url": database_url,
            "redis_url": redis_url,
            "data_dir": folder / "data",
            "media_dir": folder / "media",
            "log_file": folder / "logs" / "app.log",
            "poll_sweep_interval": 0.5,
            "runpod_poll_interval": 1.0,
            "submit_retry_base": 1.0,
            "image_download_retry_base": 0.5,
            "reconcile_interval": 5.0,
            **overrides,
        }
        self.settings = Settings(_env_file=None, **self._present())
        self.env = self._child_env()
        self.db = Database(database_url)
        upgrade_database(self.db)
        self.store = open_store(self.settings)
        self.celery: Any = create_celery(self.settings)
        self.processes: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []
        self.worker: subprocess.Popen[bytes] | None = None  # the one named "worker"
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        self._starts = 0
        self._sim_http = httpx.Client(
            base_url=f"{simulator.base_url}/{ENDPOINT_ID}/",
            headers={"Authorization": f"Bearer {API_KEY}"},
            timeout=10,
        )

    def _present(self) -> dict[str, Any]:
        return {name: value for name, value in self.values.items() if value is not None}

    def _child_env(self) -> dict[str, str]:
        """The test process's environment without any Podrelay setting, plus this stack's."""
        ours = {name.upper() for name in Settings.model_fields}
        env = {key: value for key, value in os.environ.items() if key.upper() not in ours}
        env.update({name.upper(): str(value) for name, value in self._present().items()})
        env["PYTHONUNBUFFERED"] = "1"
        return env

    # Processes.

    def _log_path(self, name: str) -> Path:
        self._starts += 1
        path = self.folder / "logs" / f"{self._starts:02d}-{name}.log"
        self.logs.append(path)
        return path

    def start_worker(
        self,
        *,
        concurrency: int = 8,
        name: str = "worker",
        extra_env: Mapping[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        """A worker for every queue with the embedded beat; returns once it answers a ping.

        A stack runs several workers under different `name`s (their Celery node names);
        `extra_env` is added to the stack's environment for this worker only.
        """
        running = self.workers.get(name)
        if running is not None and running.poll() is None:
            raise RuntimeError(f"worker {name} is already running")
        log = self._log_path(name)
        argv = [*worker_argv(concurrency=concurrency), "-n", f"{name}@%h"]
        process = start_process(argv, env={**self.env, **(extra_env or {})}, log_path=log)
        self.processes.append(process)
        self.workers[name] = process
        if name == "worker":
            self.worker = process
        node = f"{name}@{socket.gethostname()}"

        def ready() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"{name} exited with {process.returncode}\n{self.tail()}")
            return bool(self.celery.control.ping(destination=[node], timeout=0.5))

        wait_until(ready, timeout=60, interval=0.1, what=f"{node} answers ping", details=self.tail)
        return process

    def kill_worker(self, name: str = "worker") -> None:
        """kill -9 the worker and everything in its process group."""
        process = self.workers.pop(name)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        if process is self.worker:
            self.worker = None

    def start_api(
        self, *, port: int | None = None, extra_env: Mapping[str, str] | None = None
    ) -> str:
        """An API process on `port`, by default the webhook receiver's; returns its base URL.
        `extra_env` is added to the stack's environment for this process only."""
        port = port or self.api_port or free_port()
        argv = [
            sys.executable, "-m", "uvicorn", "app.main:app",
            "--host", "127.0.0.1", "--port", str(port), "--no-access-log",
        ]  # fmt: skip
        env = {**self.env, **(extra_env or {})}
        process = start_process(argv, env=env, log_path=self._log_path("api"))
        self.processes.append(process)
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/healthz", timeout=60)
        return url

    def run_python(self, code: str, *, timeout: float = 90) -> str:
        """Run a Python snippet with this stack's environment; returns its stdout."""
        done = subprocess.run(
            [sys.executable, "-c", code],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert done.returncode == 0, f"snippet failed ({done.returncode}):\n{done.stderr[-3000:]}"
        return done.stdout

    def tail(self, lines: int = 40) -> str:
        parts = []
        for path in self.logs:
            if path.exists():
                text = path.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {path.name}\n" + "\n".join(text))
        return "\n".join(parts)

    def close(self) -> None:
        # SIGKILL to each whole process group: nothing here checks a graceful stop, and the
        # embedded beat alone takes seconds to stop on SIGTERM.
        for process in reversed(self.processes):
            stop_process(process, kill=True)
        self.processes.clear()
        self._sim_http.close()
        self.celery.close()
        self.db.dispose()

    # Tasks.

    def send(self, prompt: str, **kwargs: Any) -> str:
        """Send the seed's task through the broker; returns the Celery task id."""
        result = self.celery.send_task(GENERATE, kwargs={"user_prompt": prompt, **kwargs})
        task_id: str = result.id
        return task_id

    def send_batch(self, prompts: list[str], **kwargs: Any) -> Any:
        return self.celery.send_task(GENERATE_BATCH, kwargs={"prompts": prompts, **kwargs})

    # The ledger.

    def jobs(self, *, ids: Iterable[str] | None = None) -> list[JobView]:
        query = select(Job).options(selectinload(Job.images), selectinload(Job.submissions))
        if ids is not None:
            query = query.where(Job.id.in_(list(ids)))
        with self.db.session() as session:
            jobs = list(session.scalars(query.order_by(Job.created_at, Job.id)))
            events: dict[str, list[JobEvent]] = {job.id: [] for job in jobs}
            rows = session.scalars(
                select(JobEvent).where(JobEvent.job_id.in_(list(events))).order_by(JobEvent.id)
            )
            for event in rows:
                events[event.job_id].append(event)
            return [_view(job, events[job.id]) for job in jobs]

    def jobs_by_task(self, task_ids: list[str]) -> dict[str, JobView]:
        """The jobs the seed task created, by task id (missing ones are left out)."""
        by_task = {job.celery_task_id: job for job in self.jobs() if job.celery_task_id}
        return {task_id: by_task[task_id] for task_id in task_ids if task_id in by_task}

    def status_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for job in self.jobs():
            counts[job.status] = counts.get(job.status, 0) + 1
        return counts

    def progress(self) -> "Progress":
        """Cheap counts for polling (the full `jobs()` view is for assertions)."""
        with self.db.session() as session:

            def count(query: Any) -> int:
                return int(session.scalar(select(func.count()).select_from(query)) or 0)

            return Progress(
                jobs=count(select(Job.id).subquery()),
                accepted=count(select(Job.id).where(Job.runpod_job_id.is_not(None)).subquery()),
                terminal=count(
                    select(Job.id).where(Job.status.in_(list(_TERMINAL_VALUES))).subquery()
                ),
                pending_images=count(
                    select(JobImage.id).where(JobImage.state == "pending").subquery()
                ),
            )

    def claimed(self) -> int:
        """Jobs a tracker holds right now (a lease a killed worker leaves behind)."""
        with self.db.session() as session:
            query = select(func.count()).select_from(Job).where(Job.claimed_until > utcnow())
            return int(session.scalar(query) or 0)

    def mark(self, label: str) -> None:
        """Print how far into the test we are (shown with `pytest -s`)."""
        print(f"[{time.monotonic() - self._born:6.1f}s] {label}")

    def wait_accepted(self, count: int, *, timeout: float) -> None:
        """Wait until `count` jobs exist and RunPod accepted each of them."""
        wait_until(
            lambda: self.progress().accepted == count,
            timeout=timeout,
            what=f"{count} jobs accepted by RunPod",
            details=lambda: f"{self.progress()}\n{self.tail()}",
        )

    def wait_settled(self, count: int, *, timeout: float) -> list[JobView]:
        """Wait until `count` jobs exist and all are terminal with no image download left."""

        def settled() -> bool:
            now = self.progress()
            return now.jobs == now.terminal == count and now.pending_images == 0

        wait_until(
            settled,
            timeout=timeout,
            interval=0.5,
            what=f"{count} jobs settled",
            details=lambda: f"ledger: {self.status_counts()}\n{self.tail()}",
        )
        return self.jobs()

    def stored_bytes(self, image: ImageView) -> bytes:
        assert image.state == "stored"
        assert image.storage_key
        return self.store.read(image.storage_key)

    # The simulator, as RunPod sees it.

    def runpod_status(self, runpod_job_id: str) -> dict[str, Any]:
        """The simulator's status object of one of its jobs (clear injected faults first)."""
        response = self._sim_http.get(f"status/{runpod_job_id}")
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body


class StackFactory:
    """Builds stacks for one test and tears all of them down in `close()`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._cleanup = ExitStack()
        self._count = 0
        self._redis_count = 0

    def simulator(self, config: SimulatorConfig) -> SimulatorServer:
        server = SimulatorServer(config)
        server.start()
        self._cleanup.callback(server.stop)
        return server

    def redis(self) -> RedisServer:
        self._redis_count += 1
        server = RedisServer(self.folder / f"redis-{self._redis_count}")
        self._cleanup.callback(server.stop)
        server.start()
        return server

    def build(
        self,
        *,
        ledger: Ledger,
        broker: Broker,
        simulator: SimulatorServer,
        redis_server: RedisServer | None = None,
        webhooks: bool = False,
        postgres_admin_url: str = PG_ADMIN_URL,
        **overrides: Any,
    ) -> WorkerStack:
        """A stack on its own folder and database; `overrides` are Settings fields.

        With `webhooks`, PUBLIC_BASE_URL is the URL of the API that `start_api()` starts.
        A PostgreSQL ledger is a fresh database on the server `postgres_admin_url` names.
        """
        self._count += 1
        folder = self.folder / f"stack-{self._count}"
        folder.mkdir(parents=True)
        if ledger == "postgresql":
            database_url = self._cleanup.enter_context(
                temporary_postgres_database("podrelay_worker", admin_url=postgres_admin_url)
            )
        else:
            database_url = f"sqlite:///{folder / 'ledger.db'}"
        redis_url = None
        if broker == "redis":
            redis_server = redis_server or self.redis()
            redis_url = redis_server.url
        api_port = free_port() if webhooks else None
        if api_port is not None:
            overrides = {"public_base_url": f"http://127.0.0.1:{api_port}", **overrides}
        stack = WorkerStack(
            folder=folder,
            api_port=api_port,
            simulator=simulator,
            database_url=database_url,
            redis_url=redis_url,
            overrides=overrides,
        )
        self._cleanup.callback(stack.close)
        return stack

    def close(self) -> None:
        self._cleanup.close()


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextmanager
def stack_factory(folder: Path) -> Iterator[StackFactory]:
    """A `StackFactory` closed on exit, also when pytest itself is sent SIGTERM (as `timeout`
    does): its children run in their own process groups, which nothing else would stop."""
    previous = signal.signal(signal.SIGTERM, _interrupt)
    factory = StackFactory(folder)
    try:
        yield factory
    finally:
        try:
            factory.close()
        finally:
            signal.signal(signal.SIGTERM, previous)


def runpod_state_of(body: dict[str, Any]) -> tuple[str, str | None]:
    """What the ledger should say for a kept RunPod job: (status, error_code)."""
    status = body.get("status")
    if status == "COMPLETED":
        if body.get("output"):
            return JobStatus.COMPLETED.value, None
        return JobStatus.FAILED.value, "output_missing"
    if status == "FAILED":
        return JobStatus.FAILED.value, "worker_failed"
    if status == "CANCELLED":
        return JobStatus.CANCELLED.value, "cancelled_at_runpod"
    if status == "TIMED_OUT":
        return JobStatus.TIMED_OUT.value, "runpod_timed_out"
    return f"not terminal at RunPod ({status})", None
