"""The process side of a deployment: Celery workers and API processes in their own process
groups, each logging to its own file, and the environment they all start from."""

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from app.core.config import Settings
from app.devstack import start_process, stop_process, wait_http, worker_argv
from tests.stack.waiting import free_port, wait_until


def clean_env(**settings: object) -> dict[str, str]:
    """This process's environment without any Podrelay setting (nor the CLI's `PODRELAY_*`),
    plus `settings` by name (a Settings field in any case, or any variable) and unbuffered
    Python output."""
    ours = {name.upper() for name in Settings.model_fields}
    env = {
        key: value
        for key, value in os.environ.items()
        if key.upper() not in ours and not key.startswith("PODRELAY_")
    }
    env["PYTHONUNBUFFERED"] = "1"
    env.update({name.upper(): str(value) for name, value in settings.items()})
    return env


def start_uvicorn(
    env: Mapping[str, str], log_path: Path, *, port: int, access_log: bool = False
) -> tuple["subprocess.Popen[bytes]", str]:
    """`uvicorn app.main:app` on 127.0.0.1:`port`, once it answers /healthz: (process, URL)."""
    argv = [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1"]
    argv += ["--port", str(port), *([] if access_log else ["--no-access-log"])]
    process = start_process(argv, env=dict(env), log_path=log_path)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/healthz", timeout=60)
    except BaseException:
        stop_process(process, kill=True)
        raise
    return process, url


@contextmanager
def uvicorn_api(env: dict[str, str], log_path: Path, *, port: int | None = None) -> Iterator[str]:
    """The API as `uvicorn app.main:app` (access log on) on 127.0.0.1; yields its base URL."""
    process, url = start_uvicorn(env, log_path, port=port or free_port(), access_log=True)
    try:
        yield url
    finally:
        stop_process(process, kill=True)


class ProcessGroup:
    """The processes of one deployment, started with `env` and logging under `folder`/logs;
    `celery` is the deployment's Celery app (to ping its workers)."""

    def __init__(
        self, *, folder: Path, env: dict[str, str], celery: Any, api_port: int | None = None
    ) -> None:
        self.folder = folder
        self.env = env
        self.celery = celery
        self.api_port = api_port
        self.processes: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []
        self.worker: subprocess.Popen[bytes] | None = None  # the one named "worker"
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        self._starts = 0

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
        log = self._log_path("api")
        process, url = start_uvicorn({**self.env, **(extra_env or {})}, log, port=port)
        self.processes.append(process)
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

    def stop_all(self) -> None:
        # SIGKILL to each whole process group: nothing here checks a graceful stop, and the
        # embedded beat alone takes seconds to stop on SIGTERM.
        for process in reversed(self.processes):
            stop_process(process, kill=True)
        self.processes.clear()
