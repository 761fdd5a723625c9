"""Processes and probes for the in-flight benchmark: ports, databases, Redis, /proc sampling.

Everything binds to 127.0.0.1 and lives in the caller's temporary directory.
"""

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import redis

from app.devstack import start_process, stop_process, temporary_postgres_database, wait_http

REDIS_BASE = "redis://127.0.0.1:6379"
REPO = Path(__file__).resolve().parent.parent
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_SAMPLE_S = 0.5

Process = subprocess.Popen[bytes]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def database(kind: str, folder: Path) -> Iterator[str]:
    """A fresh ledger database URL: a SQLite file, or a PostgreSQL database dropped after."""
    if kind == "sqlite":
        yield f"sqlite:///{folder / 'ledger.db'}"
        return
    with temporary_postgres_database("podrelay_bench") as url:
        yield url


@contextmanager
def redis_db(number: int | None) -> Iterator[str]:
    """A Redis database flushed before and after use; "" (embedded broker) for None."""
    if number is None:
        yield ""
        return
    url = f"{REDIS_BASE}/{number}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    try:
        yield url
    finally:
        client.flushdb()
        client.close()


def child_env(**values: str) -> dict[str, str]:
    """The environment of a benchmark child: ours, minus RunPod targets, plus `values`."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("RUNPOD_")}
    env.update(PYTHONUNBUFFERED="1", PYTHONPATH=str(REPO))
    env.update({key.upper(): value for key, value in values.items()})
    return env


@dataclass
class SimulatorProcess:
    process: Process
    url: str
    client: httpx.Client  # one client: building one per call costs ~30 ms of our CPU

    def get(self, path: str) -> Any:
        response = self.client.get(f"{self.url}{path}")
        response.raise_for_status()
        return response.json()


@contextmanager
def simulator(
    folder: Path, *, jobs: int, duration_s: float, run_rate_limit: int | None = None
) -> Iterator[SimulatorProcess]:
    """The RunPod simulator with a worker per job, RunPod's default rate limits (or another
    /run limit per 10 s), no progress."""
    port = free_port()
    argv = [
        sys.executable, "-m", "app.cli", "simulator", "--port", str(port),
        "--workers", str(jobs), "--job-duration-ms", str(int(duration_s * 1000)),
        "--set", f"job_duration_jitter_ms={int(duration_s * 100)}",
        "--set", "progress_updates=false",
    ]  # fmt: skip
    if run_rate_limit is not None:
        argv += ["--set", f'rate_limits={{"run": {run_rate_limit}}}']
    with running(argv, child_env(), folder / "simulator.log") as process:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/_sim/config")
        with httpx.Client(timeout=30) as client:
            yield SimulatorProcess(process, url, client)


def write_routes(path: Path, runpod_base: str, endpoint_ids: tuple[str, ...]) -> Path:
    """A routes file (ROUTES_FILE) of one route, `default`, on these endpoints of the RunPod
    (or simulator) base URL that ends in /v2, weighted equally so that each gets work."""
    endpoints = "".join(
        f'\n[[routes.default.endpoints]]\nurl = "{runpod_base}/{endpoint_id}"\n'
        for endpoint_id in endpoint_ids
    )
    path.write_text(f"[routes.default]\ndefault = true\n{endpoints}")
    return path


@contextmanager
def running(argv: list[str], env: dict[str, str], log: Path) -> Iterator[Process]:
    process = start_process(argv, env=env, log_path=log)
    try:
        yield process
    finally:
        stop_process(process)


def wait_ready(celery: Any, node: str, *, process: Process, timeout: float = 90.0) -> None:
    """Return once the Celery worker `node` answers a ping; raise if it dies or never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"worker {node} exited with {process.returncode}")
        if celery.control.ping(destination=[node], timeout=0.5):
            return
    raise TimeoutError(f"worker {node} did not answer a ping within {timeout:g} s")


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds of the process and its reaped children), or None if gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    ticks = sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
    return int(fields[1]), ticks / _CLOCK_TICKS


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def process_tree(root: int) -> list[int]:
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            parents.setdefault(stat[0], []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(parents.get(pid, []))
    return tree


def machine_times() -> tuple[int, int]:
    """(idle, total) jiffies of all CPUs since boot."""
    values = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return values[3] + values[4], sum(values)  # idle + iowait


def machine_busy(before: tuple[int, int], after: tuple[int, int]) -> float:
    """The share of all the machine's CPU time not idle between two `machine_times()`."""
    total = after[1] - before[1]
    return 1 - (after[0] - before[0]) / total if total else 0.0


class TreeSampler(threading.Thread):
    """Every 0.5 s: RSS and CPU time of a process and all its descendants."""

    def __init__(self, root: int) -> None:
        super().__init__(name="tree-sampler", daemon=True)
        self.root = root
        self.peak_rss_mb = 0.0
        self.cpu_s = 0.0
        self.cpu_start_s = 0.0
        self._halt = threading.Event()

    def sample(self) -> None:
        tree = process_tree(self.root)
        self.peak_rss_mb = max(self.peak_rss_mb, sum(_rss_mb(pid) for pid in tree))
        cpu = sum(stat[1] for pid in tree if (stat := _stat(pid)) is not None)
        self.cpu_s = max(self.cpu_s, cpu)

    def mark_start(self) -> None:
        """Count CPU from now on (start-up is not the work being measured)."""
        self.sample()
        self.cpu_start_s = self.cpu_s

    @property
    def work_cpu_s(self) -> float:
        return self.cpu_s - self.cpu_start_s

    def run(self) -> None:
        while not self._halt.wait(_SAMPLE_S):
            self.sample()

    def finish(self) -> None:
        self._halt.set()
        self.join()
        self.sample()
