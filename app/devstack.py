"""`podrelay dev`: start every Podrelay process on this machine with embedded defaults.

Each child's output is shown with a coloured name prefix; Ctrl-C (or one child dying) stops
them all: SIGINT to every child's process group at once, SIGKILL to what is left after a grace.
A worker that fails is started again instead, as `podrelay worker` does (app.core.supervisor).
"""

import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg import sql
from rich.console import Console
from rich.text import Text

from app.core.config import Settings
from app.core.parent_death import tied
from app.core.supervisor import RestartPolicy, Restarts, exit_status, signal_group
from app.scheduler.routes import WorkerKind

API_HOST = "127.0.0.1"
API_PORT = 8000
_STOP_GRACE_S = 10.0
_COLOURS = ("cyan", "magenta", "green", "yellow", "blue")


@dataclass(frozen=True)
class Service:
    name: str
    argv: list[str]
    restart: RestartPolicy | None = None  # None: when it exits, the whole stack stops


# The simulator's output shape for each worker kind (the others answer as worker-sdxl).
_SIMULATED_SHAPES = {WorkerKind.COMFYUI: "comfyui", WorkerKind.A1111: "a1111"}


def stack_services(
    settings: Settings, *, host: str = API_HOST, port: int = API_PORT
) -> list[Service]:
    """The processes of the local stack; the simulator only when no RunPod is configured."""
    python = sys.executable
    services = [
        Service(
            "api",
            [python, "-m", "uvicorn", "app.main:app", "--host", host, "--port", str(port)],
        ),
        Service("worker", worker_argv(), restart=RestartPolicy()),
    ]
    if settings.runpod_target.is_simulator:
        simulator = [
            python, "-m", "app.cli", "simulator",
            "--host", settings.simulator_host, "--port", str(settings.simulator_port),
        ]  # fmt: skip
        services.insert(0, Service("simulator", [*simulator, *simulated_endpoints(settings)]))
    return services


def simulated_endpoints(settings: Settings) -> list[str]:
    """With a routes file, each endpoint the simulator stands in for gets its own workers and
    answers in its route's worker's output shape (`podrelay simulator --endpoint`)."""
    if settings.routes_file is None:
        return []
    argv = []
    for route in settings.catalogue.routes.values():
        shape = _SIMULATED_SHAPES.get(route.kind, "worker-sdxl")
        for endpoint in route.endpoints:
            argv += ["--endpoint", f'{endpoint.id}:output_shape="{shape}"']
    return argv


def worker_argv(*, concurrency: int = 8, beat: bool = True, loglevel: str = "WARNING") -> list[str]:
    """A Celery worker for every queue, with the embedded beat that drives the tracker."""
    argv = [
        sys.executable, "-m", "celery", "-A", "app.celery_app", "worker",
        "--pool", "threads", "--concurrency", str(concurrency), "--loglevel", loglevel,
    ]  # fmt: skip
    return [*argv, "--beat"] if beat else argv


def start_process(
    argv: list[str], *, env: dict[str, str], log_path: Path, cwd: Path | None = None
) -> "subprocess.Popen[bytes]":
    """Start a child in its own process group with output to `log_path` (tests, benchmarks)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        return subprocess.Popen(  # noqa: S603 - argv built by the caller from our own parts
            argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True
        )


def wait_http(url: str, *, timeout: float = 30.0) -> None:
    """Return once `url` answers 2xx; raise TimeoutError otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1.0).is_success:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout:g} s")


def stop_process(process: "subprocess.Popen[Any]", *, kill: bool = False) -> None:
    """SIGTERM (or SIGKILL) the child's whole process group and wait for it."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL if kill else signal.SIGTERM)
    try:
        process.wait(timeout=_STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def run_stack(services: list[Service], *, api_url: str = f"http://{API_HOST}:{API_PORT}") -> int:
    """Run the services until Ctrl-C or until one exits; returns the exit status to use."""
    children: list[tuple[Service, subprocess.Popen[str]]] = []
    # Also when started with SIGINT ignored (`podrelay dev &` in a script): it must stop us.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if any(service.name == "simulator" for service in services):
        # The local simulator can reach the local API, so completions arrive by webhook.
        env.setdefault("PUBLIC_BASE_URL", api_url)
    console = Console(highlight=False, soft_wrap=True)

    def launch(index: int) -> None:
        """Start `services[index]`, or start it again, as `children[index]`."""
        service = services[index]
        # Called from the main thread only: see `tied`.
        process = subprocess.Popen(  # noqa: S603 - argv built from our own settings
            tied(service.argv),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            start_new_session=True,
        )
        children[index : index + 1] = [(service, process)]
        prefix = Text(f"{service.name:<9}| ", style=_COLOURS[index % len(_COLOURS)])
        relay = threading.Thread(target=_relay, args=(console, prefix, process), daemon=True)
        relay.start()

    try:
        for index in range(len(services)):
            launch(index)
        return _watch(children, launch)
    except KeyboardInterrupt:
        return 0
    finally:
        # A second Ctrl-C must not cut the stop short and leave children behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if children:
            print(f"\nstopping (at most {_STOP_GRACE_S:g} s)...", flush=True)
        stop_all([process for _, process in children])


def _interrupt(_signum: int, _frame: object) -> None:
    # SIGTERM must stop the children too, exactly like Ctrl-C does.
    raise KeyboardInterrupt


def _watch(
    children: list[tuple[Service, subprocess.Popen[str]]], launch: Callable[[int], None]
) -> int:
    restarts = {
        index: Restarts(service.restart)
        for index, (service, _) in enumerate(children)
        if service.restart is not None
    }
    started = dict.fromkeys(range(len(children)), time.monotonic())
    due: dict[int, float] = {}  # failed children to start again, and when
    while True:
        for index, (service, process) in enumerate(children):
            now = time.monotonic()
            if index in due:
                if now >= due[index]:
                    del due[index]
                    launch(index)
                    started[index] = now
                continue
            code = process.poll()
            if code is None:
                continue
            if code == 0 or index not in restarts:
                print(f"[{service.name}] exited with status {code}; stopping the stack", flush=True)
                return exit_status(code) or 1
            signal_group(process, signal.SIGKILL)  # what it left behind: its embedded beat
            delay = restarts[index].after_failure(now - started[index])
            print(restarts[index].report(f"[{service.name}]", code, delay), flush=True)
            if delay is None:
                return exit_status(code)
            due[index] = now + delay
        time.sleep(0.3)


def _relay(console: Console, prefix: Text, process: subprocess.Popen[str]) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        console.print(prefix + Text(line.rstrip("\n")))


def stop_all(processes: "list[subprocess.Popen[Any]]", *, grace: float = _STOP_GRACE_S) -> None:
    """SIGINT every child's process group at once (a terminal's Ctrl-C, which they do not get in
    their own sessions), wait up to `grace` seconds in all, then SIGKILL the groups left."""
    for process in processes:
        if process.poll() is None:
            signal_group(process, signal.SIGINT)
    deadline = time.monotonic() + grace
    for process in processes:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for process in processes:
        # Also when the leader is gone: its children (the embedded beat) may still be running.
        signal_group(process, signal.SIGKILL)
        process.wait()


PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"


@contextmanager
def temporary_postgres_database(prefix: str, *, admin_url: str = PG_ADMIN_URL) -> Iterator[str]:
    """A fresh PostgreSQL database for a test or benchmark, dropped afterwards.

    Yields its SQLAlchemy URL. `admin_url` names an existing database to connect to meanwhile.
    """
    name = f"{prefix}_{secrets.token_hex(5)}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    host = admin_url.split("://", 1)[1].rsplit("/", 1)[0]
    try:
        yield f"postgresql+psycopg://{host}/{name}"
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
