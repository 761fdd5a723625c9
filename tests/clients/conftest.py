"""A real Podrelay stack for the SDKs' tests: the API and a worker as processes, PostgreSQL, a
private Redis, the simulator standing in for RunPod (webhook mode), and API keys."""

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.accounts.service import create_key
from app.simulator.config import SimulatorConfig
from tests.jobs.worker_stack import WorkerStack, stack_factory

ROOT = Path(__file__).resolve().parents[2]
CLIENTS = ROOT / "clients"
TYPESCRIPT = CLIENTS / "typescript"
SIMULATOR = SimulatorConfig(
    workers=8, job_duration_ms=150, job_duration_jitter_ms=50, random_seed=3
)


@dataclass(frozen=True)
class SdkStack:
    stack: WorkerStack
    url: str
    key: str  # an ordinary key, 600 requests per minute
    webhook_secret: str  # the key's

    def new_key(self, name: str, *, requests_per_minute: int | None = None) -> str:
        with self.stack.db.session() as session:
            key, plaintext = create_key(session, name=name)
            key.requests_per_minute = requests_per_minute
            return plaintext


@pytest.fixture(scope="session")
def sdk_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SdkStack]:
    with stack_factory(tmp_path_factory.mktemp("sdk-stack")) as factory:
        stack = factory.build(
            ledger="postgresql",
            broker="redis",
            simulator=factory.simulator(SIMULATOR.model_copy()),
            webhooks=True,
            requests_per_minute=600,
            poll_sweep_interval=0.2,
        )
        stack.start_worker(concurrency=4)
        url = stack.start_api()
        with stack.db.session() as session:
            key, plaintext = create_key(session, name="sdk-tests")
            secret = key.webhook_secret
        yield SdkStack(stack=stack, url=url, key=plaintext, webhook_secret=secret)


def run(argv: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def installed_npm() -> str:
    """npm, once the TypeScript package's dependencies are installed as its lock file pins."""
    npm = shutil.which("npm")
    assert npm, "npm is needed (.ci/run installs it)"
    assert shutil.which("node"), "node is needed (.ci/run installs it)"
    installed = TYPESCRIPT / "node_modules" / ".package-lock.json"
    lock = TYPESCRIPT / "package-lock.json"
    if not installed.exists() or installed.stat().st_mtime < lock.stat().st_mtime:
        done = run([npm, "ci", "--no-audit", "--no-fund"], TYPESCRIPT)
        assert done.returncode == 0, done.stderr[-3000:]
    return npm
