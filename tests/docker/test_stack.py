"""The Docker files, built and run: both images build, the worker image holds no web server and
no CUDA, and `docker compose --profile simulator` (docker-compose.yml) completes a job through
the containers: API, worker, beat, Flower, PostgreSQL, Redis, MinIO and the simulator. The
job's image is stored in MinIO's bucket and served from there, to anyone with its signed URL.

Needs a Docker daemon (.ci/run installs and starts one); where none can run, the tests are
skipped and say why. Images are built once per content (tests/docker/images.py), so a warm run
only starts the stack. Nothing is published beyond 127.0.0.1, on free ports.
"""

import hashlib
import json
import os
import re
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from tests.docker.images import Images, daemon_problem, docker, podrelay_images
from tests.stack.waiting import free_port
from tests.test_docker import COMPOSE, HOST_VARIABLES, Compose, compose_command

ROOT = Path(__file__).resolve().parents[2]
STACK_DEADLINE_S = 240.0
JOB_DEADLINE_S = 120.0
T = TypeVar("T")
# Distributions and programs that serve HTTP, and what a GPU stack installs.
WEB_SERVERS = (
    "uvicorn",
    "gunicorn",
    "hypercorn",
    "daphne",
    "fastapi",
    "starlette",
    "flower",
    "tornado",
    "aiohttp",
    "flask",
    "werkzeug",
    "django",
    "nginx",
    "apache2",
    "httpd",
)
GPU_STACKS = ("torch", "nvidia", "cuda", "triton", "tensorrt", "cupy")

# Prints what of WEB_SERVERS and GPU_STACKS the image holds: distributions, programs on PATH,
# and files whose names mention CUDA or NVIDIA anywhere on the image's file system.
_INVENTORY = """
import importlib.metadata, json, os, re, shutil, sys
web, gpu = json.loads(sys.argv[1]), json.loads(sys.argv[2])
names = (d.metadata["Name"] for d in importlib.metadata.distributions())
dists = {re.sub(r"[-_.]+", "-", name).lower() for name in names}
found = sorted(d for d in dists if d.startswith(tuple(web + gpu)))
found += sorted(f"program {p}" for p in web if shutil.which(p))
for top, dirs, files in os.walk("/"):
    if top == "/":
        dirs[:] = [d for d in dirs if d not in ("proc", "sys", "dev")]
    found += [os.path.join(top, n) for n in files if re.search(r"cuda|nvidia", n, re.I)]
print(json.dumps(found))
"""

pytestmark = pytest.mark.timeout(1500)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Images:
    problem = daemon_problem()
    if problem:
        pytest.skip(f"Docker stack test not run: {problem}")
    # The stack's services that run a public image, not ours: PostgreSQL, Redis, MinIO and its
    # client (compose v1 lists every profile's services; those of a profile are ours or unused).
    compose = Compose(tmp_path_factory.mktemp("compose") / "empty.env")
    services = compose.services("-f", COMPOSE, "--profile", "simulator")
    public = {n: s["image"] for n, s in services.items() if not {"build", "profiles"} & set(s)}
    return podrelay_images(public)


def inventory(image: str) -> list[str]:
    output = docker(
        "run",
        "--rm",
        "--network",
        "none",
        "--entrypoint",
        "python",
        image,
        "-c",
        _INVENTORY,
        json.dumps(list(WEB_SERVERS)),
        json.dumps(list(GPU_STACKS)),
    )
    found: list[str] = json.loads(output)
    return found


def test_worker_image_holds_no_web_server_and_no_cuda(images: Images) -> None:
    assert inventory(images.worker) == []
    # The same inventory finds the API image's web server: the check above can fail.
    assert {"uvicorn", "fastapi", "program uvicorn"} <= set(inventory(images.api))


class Stack:
    """One `docker compose` project of docker-compose.yml, the images swapped for the built ones."""

    def __init__(self, images: Images, directory: Path) -> None:
        self.project = f"podrelay-test-{os.getpid()}-{secrets.token_hex(3)}"
        self.api_port = free_port()
        minio_port = free_port()
        self.media_base_url = f"http://127.0.0.1:{minio_port}/podrelay"
        override = {
            "services": {
                **{name: {"image": images.api} for name in ("api", "flower", "simulator")},
                **{name: {"image": images.worker} for name in ("worker", "beat")},
                **{name: {"image": image} for name, image in images.stand_ins.items()},
            }
        }
        # No settings from a developer's ./.env: only what this class sets.
        self.env_file = directory / "empty.env"
        self.env_file.write_text("")
        self.override = directory / "docker-compose.test.yml"
        self.override.write_text(json.dumps(override))  # JSON is YAML
        clean = {k: v for k, v in os.environ.items() if not k.startswith(HOST_VARIABLES)}
        self.env = {
            **clean,
            "POSTGRES_PASSWORD": secrets.token_hex(16),
            "WEBHOOK_SIGNING_SECRET": f"whsec_{secrets.token_hex(24)}",
            "MEDIA_URL_SECRET": secrets.token_hex(32),
            "MINIO_ROOT_USER": f"podrelay-{secrets.token_hex(4)}",
            "MINIO_ROOT_PASSWORD": secrets.token_hex(16),
            "MEDIA_PUBLIC_BASE_URL": self.media_base_url,
            "HOST_API_PORT": str(self.api_port),
            "HOST_FLOWER_PORT": str(free_port()),
            "HOST_SIMULATOR_PORT": str(free_port()),
            "HOST_MINIO_PORT": str(minio_port),
        }
        self.base_url = f"http://127.0.0.1:{self.api_port}"

    def compose(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        files = ["--env-file", str(self.env_file), "-f", COMPOSE, "-f", str(self.override)]
        return subprocess.run(
            [*compose_command(), "-p", self.project, *files, "--profile", "simulator", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def run(self, *args: str, timeout: float = 300) -> str:
        result = self.compose(*args, timeout=timeout)
        assert result.returncode == 0, f"compose {args[0]} failed:\n{result.stderr[-3000:]}"
        return result.stdout

    def logs(self) -> str:
        result = self.compose("logs", "--no-color", "--tail", "60", timeout=120)
        return (result.stdout + result.stderr)[-12000:]


@pytest.fixture
def stack(images: Images, tmp_path: Path) -> Iterator[Stack]:
    running = Stack(images, tmp_path)
    try:
        running.run("up", "-d", "--no-build")
        yield running
    finally:
        running.compose("down", "-v", "--remove-orphans", "-t", "5", timeout=300)


def wait_for(stack: Stack, what: str, deadline_s: float, check: Callable[[], T | None]) -> T:
    """Polls `check()` until it returns something other than None."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            found = check()
        except httpx.TransportError:
            found = None
        if found is not None:
            return found
        time.sleep(1)
    pytest.fail(f"{what} not within {deadline_s:.0f} s; the stack's logs:\n{stack.logs()}")


def test_a_job_completes_through_the_compose_stack(stack: Stack) -> None:
    with httpx.Client(base_url=stack.base_url, timeout=10) as client:

        def ready() -> bool | None:
            return True if client.get("/readyz").status_code == 200 else None

        wait_for(stack, "/readyz answering 200", STACK_DEADLINE_S, ready)
        # Production mode: API keys required, created with the CLI inside the API container.
        created = stack.run("exec", "-T", "api", "podrelay", "keys", "create", "docker-test")
        match = re.search(r"^api key:\s+(\S+)$", created, re.MULTILINE)
        assert match, created
        client.headers["Authorization"] = f"Bearer {match.group(1)}"
        assert client.post("/api/v1/runpod/generate", json={}).status_code == 422

        submitted = client.post("/api/v1/runpod/generate", json={"prompt": "a lighthouse"})
        assert submitted.status_code == 202, submitted.text
        status_url = submitted.json()["links"]["status"]

        def finished() -> dict[str, Any] | None:
            job: dict[str, Any] = client.get(status_url).json()
            stored = [image for image in job["images"] if image["state"] == "stored"]
            done = job["status"] not in ("pending", "queued", "running") and (
                job["status"] != "completed" or stored
            )
            return job if done else None

        job = wait_for(stack, "the job finishing", JOB_DEADLINE_S, finished)
        assert job["status"] == "completed", job
        image = job["images"][0]
        # The worker stored the image in MinIO's bucket; the API sends its owner there.
        owned = client.get(image["url"])
        assert owned.status_code in (302, 307), owned.text
        assert owned.headers["location"].startswith(f"{stack.media_base_url}/")
    # Anyone with the signed URL (a path on the API) gets the image from MinIO, without a key.
    with httpx.Client(base_url=stack.base_url, timeout=10, follow_redirects=True) as anonymous:
        served = anonymous.get(image["signed_url"])
    assert served.status_code == 200, served.text
    assert str(served.url).startswith(f"{stack.media_base_url}/")
    assert served.headers["content-type"] == image["mime_type"]
    assert hashlib.sha256(served.content).hexdigest() == image["sha256"]
    assert len(served.content) == image["size_bytes"]
    running = set(stack.run("ps", "--services", "--filter", "status=running").split())
    assert running >= {"api", "worker", "beat", "flower", "simulator", "postgres", "redis", "minio"}
