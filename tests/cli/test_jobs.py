"""`podrelay worker|generate|status|cancel` against a real stack: the CLI's own worker, the API
as a separate process, the simulator standing in for RunPod, an embedded broker and SQLite."""

import json
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from app.devstack import start_process
from app.simulator.config import SimulatorConfig
from tests.cli.helpers import PODRELAY, assert_error_line, run_podrelay
from tests.stack.deployment import WorkerStack
from tests.stack.factory import stack_factory
from tests.stack.http_api import bearer
from tests.stack.processes import clean_env
from tests.stack.waiting import wait_until

pytestmark = pytest.mark.timeout(300)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SMALL = ["--width", "256", "--height", "256"]
SIMULATOR = SimulatorConfig(
    workers=4, job_duration_ms=300, job_duration_jitter_ms=100, random_seed=5
)


@dataclass
class CliStack:
    stack: WorkerStack
    url: str
    key: str
    folder: Path

    def run(self, *args: str, key: bool = True) -> subprocess.CompletedProcess[str]:
        """`podrelay ARGS` with the API's URL and the key in the environment, as a user sets."""
        env = clean_env(PODRELAY_API_URL=self.url)
        if key:
            env["PODRELAY_API_KEY"] = self.key
        return run_podrelay(*args, env=env, cwd=self.folder)

    def get(self, url: str) -> httpx.Response:
        return httpx.get(url, headers=bearer(self.key), timeout=30)


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CliStack]:
    folder = tmp_path_factory.mktemp("cli-stack")
    with stack_factory(folder) as factory:
        stack = factory.build(
            ledger="sqlite",
            broker="embedded",
            simulator=factory.simulator(SIMULATOR.model_copy()),
            webhooks=True,
        )
        log = folder / "podrelay-worker.log"
        worker = start_process(
            [*PODRELAY, "worker", "--concurrency", "2"], env=stack.env, log_path=log
        )
        stack.processes.append(worker)
        stack.logs.append(log)
        wait_until(
            lambda: bool(stack.celery.control.ping(timeout=0.5)),
            timeout=90,
            what="`podrelay worker` answers ping",
            details=stack.tail,
        )
        url = stack.start_api()
        created = run_podrelay("keys", "create", "cli-tests", env=stack.env, cwd=folder)
        assert created.returncode == 0, created.stderr
        key = re.search(r"api key:\s+(\S+)", created.stdout)
        assert key is not None, created.stdout
        yield CliStack(stack=stack, url=url, key=key[1], folder=folder)


def test_worker_command_starts_a_worker_with_the_given_concurrency(cli: CliStack) -> None:
    stats = cli.stack.celery.control.inspect(timeout=10, limit=1).stats()
    assert stats, "no worker answered"
    [worker] = stats.values()
    assert worker["pool"]["max-concurrency"] == 2


def test_generate_wait_prints_urls_of_stored_images(cli: CliStack) -> None:
    result = cli.run(
        "generate", "a lighthouse at dusk", "--wait", *SMALL,
        "--seed", "42", "--steps", "10", "--negative", "blurry",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    [image_url] = result.stdout.splitlines()
    assert image_url.startswith(f"{cli.url}/api/v1/runpod/images/")
    image = cli.get(image_url)
    assert image.status_code == 200
    assert image.content.startswith(PNG_MAGIC)
    # The progress display (on stderr) names the job and its end state.
    found = re.search(r"(job_\w+)", result.stderr)
    assert found is not None, result.stderr
    assert "completed" in result.stderr

    raw = cli.run("status", found[1], "--json")
    job = json.loads(raw.stdout)
    assert (job["id"], job["status"], job["negative_prompt"]) == (found[1], "completed", "blurry")
    assert job["params"] | {"width": 256, "seed": 42, "num_inference_steps": 10} == job["params"]

    summary = cli.run("status", found[1])
    assert summary.returncode == 0, summary.stderr
    lines = summary.stdout.splitlines()
    assert f"job       {found[1]}" in lines
    assert "status    completed" in lines
    assert "prompt    a lighthouse at dusk" in lines
    assert f"image     {image_url}  (stored, 256x256)" in lines
    assert any(line.startswith("finished  ") for line in lines)


def test_generate_batch_downloads_every_image(cli: CliStack, tmp_path: Path) -> None:
    result = cli.run("generate", "a red fox", "-n", "3", "--out", str(tmp_path / "out"), *SMALL)
    assert result.returncode == 0, result.stderr
    first, *paths = result.stdout.splitlines()
    batch = re.fullmatch(r"batch (batch_\w+)  (\S+)", first)
    assert batch is not None, first
    assert len(paths) == 3
    for path in paths:
        assert Path(path).parent == tmp_path / "out"
        assert Path(path).read_bytes().startswith(PNG_MAGIC)
    listed = cli.get(batch[2]).json()
    assert (listed["id"], listed["size"], listed["done"]) == (batch[1], 3, True)
    assert {job["prompt"] for job in listed["jobs"]} == {"a red fox"}


def test_generate_without_wait_prints_the_job_and_its_status_url(cli: CliStack) -> None:
    result = cli.run("generate", "a quiet harbour", *SMALL)
    assert result.returncode == 0, result.stderr
    line = re.fullmatch(r"(job_\w+)  pending  (\S+)", result.stdout.strip())
    assert line is not None, result.stdout
    assert line[2] == f"{cli.url}/api/v1/runpod/status/{line[1]}"
    assert cli.get(line[2]).json()["id"] == line[1]


def test_cancel_stops_an_active_job(cli: CliStack) -> None:
    cli.stack.simulator.set_faults(workers=0)  # RunPod keeps the job queued until cancelled
    try:
        started = cli.run("generate", "a slow one", *SMALL)
        assert started.returncode == 0, started.stderr
        job_id = started.stdout.split()[0]
        cancelled = cli.run("cancel", job_id)
        assert cancelled.returncode == 0, cancelled.stderr
        assert cancelled.stdout.strip() == f"{job_id}  cancelled"
        assert json.loads(cli.run("status", job_id, "--json").stdout)["status"] == "cancelled"
    finally:
        cli.stack.simulator.set_faults(workers=SIMULATOR.workers)


def test_cancel_of_a_finished_job_says_already_finished(cli: CliStack) -> None:
    done = cli.run("generate", "a finished one", "--wait", *SMALL)
    assert done.returncode == 0, done.stderr
    found = re.search(r"(job_\w+)", done.stderr)
    assert found is not None, done.stderr
    result = cli.run("cancel", found[1])
    assert_error_line(result, f"{found[1]} already finished (")
    assert "completed" in result.stderr
    assert result.returncode == 1


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["status", "job_nope"], "not found: "),
        (["cancel", "job_nope"], "not found: "),
        (["generate", ""], "invalid request: prompt: "),
        (["generate", "a fox", "--width", "100"], "invalid request: width: "),
        (["generate", "a fox", "-n", "11"], "invalid request: prompts: "),
        (["generate", "a fox", "--model", "nope"], "invalid request: unknown model 'nope'"),
        (["generate", "a fox", "--api-key", "prk_not_a_key"], "unauthorized: "),
    ],
)
def test_api_errors_are_one_line(cli: CliStack, args: list[str], expected: str) -> None:
    result = cli.run(*args)
    assert_error_line(result, expected)
    assert result.returncode == 1


def test_a_missing_key_names_the_ways_to_pass_one(cli: CliStack) -> None:
    result = cli.run("status", "job_x", key=False)
    assert_error_line(result, "unauthorized: ")
    assert result.stderr.rstrip().endswith("(pass --api-key or set PODRELAY_API_KEY)")
