"""Podrelay as a user who outgrew one machine deploys it: two Celery workers and two API
processes sharing one PostgreSQL ledger and one Redis, RunPod played by the simulator.

Each worker has its own DATA_DIR (its beat schedule) and Celery node name, as on its own
machine; the media store is shared, as a network volume would be. Jobs are submitted over
HTTP, alternately to each API, by client threads that retry refused or failed requests with
the same `Idempotency-Key`, as a careful client does. A supervisor starts again a worker that
exits on its own, as `restart: unless-stopped` in docker-compose.yml or systemd would: Celery
ends a worker on an "unrecoverable" broker error (seen when Redis restarts under load).
"""

import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx

from app.accounts.service import create_key
from tests.stack.deployment import SMALL_PARAMS, WorkerStack
from tests.stack.redis_server import RedisServer
from tests.stack.waiting import free_port

WORKERS = ("worker-a", "worker-b")
GENERATE_PATH = "/api/v1/runpod/generate"
CLIENT_THREADS = 8
# The tenant-flood scenario's keys besides the flooding one, and how often each submits.
TRICKLERS = ("trickle-a", "trickle-b", "trickle-c")
TRICKLE_EVERY_S = 0.5
# How long a client keeps retrying one request before it counts it as refused.
SUBMIT_PATIENCE_S = 120.0
# The chaos stack's own settings: no per-client limit in the way, quick safety polls.
CLUSTER_SETTINGS: dict[str, Any] = {
    "allow_anonymous": True,
    "requests_per_minute": 1_000_000,
    "creates_per_minute": 1_000_000,
    "max_concurrent_jobs": 1_000_000,
    "webhook_safety_poll": 10.0,
    "submit_retry_base": 2.0,
    "runpod_poll_interval": 2.0,
    "poll_sweep_interval": 0.5,
    "reconcile_interval": 5.0,
    "runpod_job_timeout": 240.0,
    # Shorter than the defaults (120 s, 60 s) so a killed worker's jobs come back sooner.
    "submit_lease": 30.0,
    "poll_lease": 15.0,
}


@dataclass
class Submissions:
    """What the API answered: job ids by client request, and what it took to get them."""

    accepted: dict[str, str] = field(default_factory=dict)  # idempotency key -> job id
    refused: dict[str, str] = field(default_factory=dict)  # key -> the last error seen
    trickled: set[str] = field(default_factory=set)  # the trickling keys' requests
    retries: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class Cluster:
    """Two workers and two APIs on one `WorkerStack` (its ledger, broker and simulator)."""

    def __init__(self, stack: WorkerStack, redis_server: RedisServer) -> None:
        self.stack = stack
        self.redis = redis_server
        self.api_urls: list[str] = []
        self.submissions = Submissions()
        self.restarts: list[str] = []
        self._submitter: threading.Thread | None = None
        self._worker_env: dict[str, Mapping[str, str]] = {}
        self._stopping = threading.Event()

    def start(self, *, worker_env: Mapping[str, Mapping[str, str]] | None = None) -> None:
        """Both workers (each with `worker_env[name]` added), then both APIs; the first API
        is the one PUBLIC_BASE_URL names, when webhooks are on."""
        for name in WORKERS:
            self._worker_env[name] = (worker_env or {}).get(name, {})
            self.start_worker(name)
        self.api_urls.append(self.stack.start_api())
        self.api_urls.append(self.stack.start_api(port=free_port()))
        threading.Thread(target=self._supervise, name="supervisor", daemon=True).start()

    def start_worker(self, name: str) -> None:
        data_dir = self.stack.folder / f"{name}-data"
        env = {"DATA_DIR": str(data_dir), **self._worker_env.get(name, {})}
        self.stack.start_worker(name=name, extra_env=env)

    def stop_supervising(self) -> None:
        self._stopping.set()

    def _supervise(self) -> None:
        # A worker the test kills on purpose leaves `stack.workers` first, so it is not seen.
        while not self._stopping.wait(1.0):
            for name, process in list(self.stack.workers.items()):
                if process.poll() is None or self._stopping.is_set():
                    continue
                self.stack.mark(f"{name} exited with {process.returncode}; supervisor restarts it")
                self.restarts.append(f"{name} (exit {process.returncode})")
                try:
                    self.start_worker(name)
                except Exception as error:  # noqa: BLE001 - the broker may still be away: next round
                    self.stack.mark(f"restarting {name} failed: {str(error)[:200]}")

    # Submitting.

    def submit_in_background(self, count: int, label: str, *, tenants: bool = False) -> None:
        """`count` jobs over HTTP; with `tenants`, from four API keys: one floods three
        quarters of them at once, three trickle the rest in one at a time (`TRICKLE_EVERY_S`)."""
        target = self._submit_tenants if tenants else self._submit_all
        thread = threading.Thread(target=target, args=(count, label), daemon=True)
        self._submitter = thread
        thread.start()

    def _submit_tenants(self, count: int, label: str) -> None:
        keys = {name: self._new_key(name) for name in ("flood", *TRICKLERS)}
        flood = count - count // 4
        trickles = [TRICKLERS[n % len(TRICKLERS)] for n in range(count - flood)]
        clients = [httpx.Client(base_url=url, timeout=30) for url in self.api_urls]
        try:
            with ThreadPoolExecutor(CLIENT_THREADS + len(TRICKLERS)) as pool:
                for n in range(flood):
                    client = clients[n % len(clients)]
                    headers = keys["flood"]
                    pool.submit(self._submit_one, client, f"{label}-flood-{n:05d}", n, headers)
                for n, name in enumerate(trickles):
                    time.sleep(TRICKLE_EVERY_S / len(TRICKLERS))
                    key = f"{label}-{name}-{n:05d}"
                    with self.submissions.lock:
                        self.submissions.trickled.add(key)
                    pool.submit(self._submit_one, clients[n % len(clients)], key, n, keys[name])
        finally:
            for client in clients:
                client.close()

    def _new_key(self, name: str) -> dict[str, str]:
        with self.stack.db.session() as session:
            _, plaintext = create_key(session, name=name)
        return {"Authorization": f"Bearer {plaintext}"}

    def trickled_job_ids(self) -> list[str]:
        """The jobs the trickling keys got accepted."""
        with self.submissions.lock:
            accepted = self.submissions.accepted
            return [accepted[key] for key in self.submissions.trickled if key in accepted]

    def wait_submitted(self, timeout: float) -> None:
        assert self._submitter is not None
        self._submitter.join(timeout)
        assert not self._submitter.is_alive(), f"submissions not done within {timeout:g} s"

    def _submit_all(self, count: int, label: str) -> None:
        clients = [httpx.Client(base_url=url, timeout=30) for url in self.api_urls]
        try:
            with ThreadPoolExecutor(CLIENT_THREADS) as pool:
                for n in range(count):
                    client = clients[n % len(clients)]
                    pool.submit(self._submit_one, client, f"{label}-{n:05d}", n)
        finally:
            for client in clients:
                client.close()

    def _submit_one(
        self, client: httpx.Client, key: str, n: int, headers: Mapping[str, str] | None = None
    ) -> None:
        body = {"prompt": f"{key}: a lighthouse on a cliff, number {n}", **SMALL_PARAMS}
        record = self.submissions
        deadline = time.monotonic() + SUBMIT_PATIENCE_S
        error = "no attempt"
        while time.monotonic() < deadline:
            try:
                response = client.post(
                    GENERATE_PATH, json=body, headers={"Idempotency-Key": key, **(headers or {})}
                )
            except httpx.HTTPError as failure:
                error = f"{type(failure).__name__}: {failure}"
            else:
                if response.status_code == 202:
                    with record.lock:
                        record.accepted[key] = response.json()["id"]
                    return
                error = f"{response.status_code}: {response.text[:300]}"
            with record.lock:
                record.retries += 1
            time.sleep(0.5)
        with record.lock:
            record.refused[key] = error

    def accepted_count(self) -> int:
        with self.submissions.lock:
            return len(self.submissions.accepted)

    def job_ids(self) -> list[str]:
        with self.submissions.lock:
            return list(self.submissions.accepted.values())
