"""Fixtures for client webhooks: the ledger on both backends (shared with tests/jobs), an engine
factory with webhook settings, and a real HTTP receiver on 127.0.0.1."""

import json
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol

import pytest

from app.core.migrate import upgrade_database
from app.jobs.engine import JobEngine
from app.simulator.server import SimulatorServer
from tests.jobs.conftest import database_url, engine_settings, postgres_url

__all__ = ["database_url", "postgres_url"]  # the ledger fixtures, on SQLite and PostgreSQL


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """What the receiver got, and the answers it gives next (200 once the script runs out)."""

    base_url: str
    requests: list[Received] = field(default_factory=list)
    script: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str = "/hook", host: str = "127.0.0.1") -> str:
        return self.base_url.replace("127.0.0.1", host) + path

    def answer(self, *statuses: int, headers: dict[str, str] | None = None) -> None:
        self.script.extend((status, headers or {}) for status in statuses)

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()
            self.script.clear()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    receiver: Receiver


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        receiver = self.server.receiver
        with receiver.lock:
            receiver.requests.append(
                Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            )
            status, headers = receiver.script.pop(0) if receiver.script else (200, {})
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="session")
def receiver_server() -> Iterator[Receiver]:
    server = _Server(("127.0.0.1", 0), _Handler)
    server.receiver = Receiver(base_url=f"http://127.0.0.1:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, name="webhook-receiver", daemon=True)
    thread.start()
    try:
        yield server.receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def receiver(receiver_server: Receiver) -> Iterator[Receiver]:
    receiver_server.reset()
    yield receiver_server
    receiver_server.reset()


class EngineFactory(Protocol):
    def __call__(self, **overrides: Any) -> JobEngine: ...


@pytest.fixture
async def make_engine(
    simulator: SimulatorServer, database_url: str, tmp_path: Path
) -> AsyncIterator[EngineFactory]:
    """Engines on this test's ledger; private webhook URLs are allowed unless overridden."""
    engines: list[JobEngine] = []

    def make(**overrides: Any) -> JobEngine:
        values = {"allow_private_webhook_urls": True, **overrides}
        engine = JobEngine.from_settings(
            engine_settings(simulator, database_url, tmp_path, **values)
        )
        upgrade_database(engine.db)
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        await engine.aclose()
        engine.db.dispose()


@pytest.fixture
def engine(make_engine: EngineFactory) -> JobEngine:
    return make_engine()
