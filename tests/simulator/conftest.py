"""Fixtures: one simulator per session (reset before every test) and a webhook receiver.

Tests talk to the simulator over real HTTP with plain httpx, as a RunPod client would.
"""

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from app.simulator.server import SimulatorServer
from tests.simulator.helpers import ENDPOINT, WebhookReceiver, endpoint_client, fast_config


@pytest.fixture(scope="session")
def sim_server() -> Iterator[SimulatorServer]:
    with SimulatorServer(fast_config()) as server:
        yield server


@pytest.fixture
def sim(sim_server: SimulatorServer) -> SimulatorServer:
    sim_server.reset()
    return sim_server


@pytest.fixture(scope="session")
def _api_client(sim_server: SimulatorServer) -> Iterator[httpx.Client]:
    with endpoint_client(sim_server, ENDPOINT) as client:
        yield client


@pytest.fixture(scope="session")
def _anon_client(sim_server: SimulatorServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim_server.url, timeout=30) as client:
        yield client


@pytest.fixture
def client(sim: SimulatorServer, _api_client: httpx.Client) -> httpx.Client:
    """Authenticated client for `/v2/ep-test/...` (paths like "/run")."""
    return _api_client


@pytest.fixture
def anon(sim: SimulatorServer, _anon_client: httpx.Client) -> httpx.Client:
    """Client without credentials, rooted at the simulator URL."""
    return _anon_client


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    state = WebhookReceiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with state.lock:
                state.bodies.append(body)
                code = state.replies.pop(0) if state.replies else 200
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
    thread.join()
