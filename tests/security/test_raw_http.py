"""The API as a real `uvicorn` process, spoken to over raw sockets: clients that trickle a
body (slowloris on the body), bodies declared too large, and header bytes a lax proxy could
pass on. The upload time limit is 2 s here; every wait below is bounded."""

import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from app.api.limits import RUNPOD_WEBHOOK_MAX_BYTES
from app.simulator.server import SimulatorServer
from tests.stack.http_api import API, PROBLEM_JSON
from tests.stack.processes import clean_env, uvicorn_api

BODY_TIMEOUT_S = 2.0
MAX_BYTES = 4096
GENERATE = f"{API}/generate"


class LiveApi:
    def __init__(self, url: str, log: Path) -> None:
        self.url = url
        self.port = int(url.rsplit(":", 1)[1])
        self.log = log

    def connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        sock.settimeout(10)
        return sock


@pytest.fixture(scope="module")
def live_api(
    simulator_server: SimulatorServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveApi]:
    folder = tmp_path_factory.mktemp("raw-http")
    env = clean_env(
        environment="development",
        runpod_url=f"{simulator_server.base_url}/raw-ep/run",
        runpod_api_key="test-key",
        database_url=f"sqlite:///{folder / 'api.db'}",
        data_dir=folder / "data",
        media_dir=folder / "media",
        log_file=folder / "app.log",
        request_body_timeout=BODY_TIMEOUT_S,
        max_request_bytes=MAX_BYTES,
    )
    log = folder / "uvicorn.log"
    with uvicorn_api(env, log) as url:
        yield LiveApi(url, log)


def head(path: str, content_length: int, *, extra: str = "") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: podrelay.test\r\nContent-Type: application/json\r\n"
        f"Content-Length: {content_length}\r\n{extra}\r\n"
    ).encode()


def read_answer(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (or 10 s pass)."""
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except (TimeoutError, ConnectionResetError):
        pass
    return b"".join(chunks)


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0


def trickle(sock: socket.socket, stop: threading.Event) -> None:
    """One byte of the body every 0.2 s until the server hangs up."""
    while not stop.wait(0.2):
        try:
            sock.sendall(b" ")
        except OSError:
            return


def test_a_trickled_body_is_cut_off_while_other_clients_are_served(live_api: LiveApi) -> None:
    slow = []
    stop = threading.Event()
    for path in (GENERATE, f"{API}/generate/batch", GENERATE):
        sock = live_api.connect()
        sock.sendall(head(path, 1000) + b'{"prompt": ')
        slow.append((sock, threading.Thread(target=trickle, args=(sock, stop), daemon=True)))
    silent = live_api.connect()  # sends the headers, then not one byte of the body
    silent.sendall(head(GENERATE, 1000))
    started = time.monotonic()
    for _, thread in slow:
        thread.start()

    # Meanwhile the server answers everyone else at once.
    with httpx.Client(base_url=live_api.url, timeout=5) as client:
        for _ in range(5):
            began = time.monotonic()
            assert client.get("/healthz").status_code == 200
            assert client.post(GENERATE, json={"prompt": "meanwhile"}).status_code == 202
            assert time.monotonic() - began < BODY_TIMEOUT_S / 2  # not held up by them

    try:
        with ThreadPoolExecutor(len(slow) + 1) as pool:
            answers = list(pool.map(read_answer, [sock for sock, _ in slow] + [silent]))
        elapsed = time.monotonic() - started
    finally:
        stop.set()
        for sock, thread in slow:
            sock.close()
            thread.join(5)
        silent.close()
    for answer in answers:
        assert status_of(answer) == 408, answer[:300]
        assert b"content-type: application/problem+json" in answer.lower()
        assert b'"code":"request_timeout"' in answer
        assert b"connection: close" in answer.lower()
    # Each was refused BODY_TIMEOUT_S after its first read, and the server hung up.
    assert elapsed < BODY_TIMEOUT_S + 2.0, elapsed


@pytest.mark.parametrize(
    ("path", "declared"),
    [
        (GENERATE, MAX_BYTES + 1),
        (f"{API}/generate/batch", 10**12),
        (f"/webhooks/runpod/{'t' * 32}", RUNPOD_WEBHOOK_MAX_BYTES + 1),
    ],
    ids=["generate", "batch-terabyte", "runpod-webhook"],
)
def test_a_body_declared_too_large_is_413_before_it_is_sent(
    live_api: LiveApi, path: str, declared: int
) -> None:
    with live_api.connect() as sock:
        began = time.monotonic()
        sock.sendall(head(path, declared))  # not one byte of the body follows
        answer = read_answer(sock)
    assert status_of(answer) == 413, answer[:300]
    assert b'"code":"payload_too_large"' in answer
    assert PROBLEM_JSON.encode() in answer
    assert time.monotonic() - began < BODY_TIMEOUT_S  # not the upload time limit


@pytest.mark.parametrize(
    "header",
    [
        b"Idempotency-Key: a\rX-Injected: yes",
        b"Idempotency-Key: a\x00b",
        b"Idempotency-Key: a\r\n X-Injected: yes",  # obsolete line folding
        b"X-Injected\r\n: yes",
        b"Content-Length: 5\r\nContent-Length: 6",
        b"Transfer-Encoding: chunked",  # together with Content-Length: request smuggling
    ],
    ids=["bare-cr", "nul", "obs-fold", "broken-name", "two-lengths", "te-and-cl"],
)
def test_malformed_header_bytes_are_refused_by_the_server(live_api: LiveApi, header: bytes) -> None:
    body = b'{"prompt": "x"}'
    request = (
        f"POST {GENERATE} HTTP/1.1\r\nHost: podrelay.test\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
    ).encode()
    with live_api.connect() as sock:
        sock.sendall(request + header + b"\r\n\r\n" + body)
        answer = read_answer(sock)
    assert status_of(answer) == 400, answer[:300]
    assert b"x-injected" not in answer.lower()
    with httpx.Client(base_url=live_api.url, timeout=5) as client:
        assert client.get("/healthz").status_code == 200


def test_crlf_in_the_path_cannot_forge_an_access_log_line(live_api: LiveApi) -> None:
    forged = "FORGED-LINE 127.0.0.1 GET /admin 200"
    with httpx.Client(base_url=live_api.url, timeout=5) as client:
        for path in (
            f"{API}/status/job%0d%0a{forged.replace(' ', '%20')}",
            f"{API}/jobs?cursor=x%0d%0a{forged.replace(' ', '%20')}",
        ):
            assert client.get(path).status_code in (404, 422)
    lines = live_api.log.read_text(errors="replace").splitlines()
    assert not [line for line in lines if line.startswith("FORGED-LINE")]
    assert any("FORGED-LINE" in line for line in lines)  # logged, inside the request line
