"""`podrelay run`: start every Podrelay process on this machine with embedded defaults.

Each child's output is shown with a name prefix; Ctrl-C (or one child dying) stops them all.
"""

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

from app.core.config import Settings

API_HOST = "127.0.0.1"
API_PORT = 8000
_STOP_GRACE_S = 10.0


@dataclass(frozen=True)
class Service:
    name: str
    argv: list[str]


def stack_services(settings: Settings) -> list[Service]:
    """The processes of the local stack; the simulator only when no RunPod is configured."""
    python = sys.executable
    services = [
        Service(
            "api",
            [python, "-m", "uvicorn", "app.main:app", "--host", API_HOST, "--port", str(API_PORT)],
        )
    ]
    if settings.runpod_target.is_simulator:
        simulator = [
            python, "-m", "app.cli", "simulator",
            "--host", settings.simulator_host, "--port", str(settings.simulator_port),
        ]  # fmt: skip
        services.insert(0, Service("simulator", simulator))
    return services


def run_stack(services: list[Service]) -> int:
    """Run the services until Ctrl-C or until one exits; returns the exit status to use."""
    children: list[tuple[Service, subprocess.Popen[str]]] = []
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    try:
        for service in services:
            process = subprocess.Popen(  # noqa: S603 - argv built from our own settings
                service.argv,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                env=env,
                start_new_session=True,
            )
            children.append((service, process))
            threading.Thread(target=_relay, args=(service.name, process), daemon=True).start()
        return _watch(children)
    except KeyboardInterrupt:
        print("\nstopping...", flush=True)
        return 0
    finally:
        _stop_all(children)


def _watch(children: list[tuple[Service, subprocess.Popen[str]]]) -> int:
    while True:
        for service, process in children:
            code = process.poll()
            if code is not None:
                print(f"[{service.name}] exited with status {code}; stopping the stack", flush=True)
                return code or 1
        time.sleep(0.3)


def _relay(name: str, process: subprocess.Popen[str]) -> None:
    assert process.stdout is not None
    width = 9
    for line in process.stdout:
        print(f"{name:<{width}}| {line}", end="", flush=True)


def _stop_all(children: list[tuple[Service, subprocess.Popen[str]]]) -> None:
    for _, process in children:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + _STOP_GRACE_S
    for _, process in children:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
