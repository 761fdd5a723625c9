"""The `podrelay` command line, run as a user would."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.accounts.service import authenticate
from app.core.config import Settings
from app.core.db import Database
from app.devstack import stack_services
from tests.cli.helpers import assert_error_line, run_podrelay
from tests.stack.processes import clean_env
from tests.stack.waiting import free_port


def podrelay(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNPOD_", "DATABASE_"))}
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        cwd=tmp_path,
        env={**env, "DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_keys_create_list_revoke(tmp_path: Path) -> None:
    created = podrelay(tmp_path, "keys", "create", "frontend", "--admin")
    assert created.returncode == 0, created.stderr
    fields = dict(line.split(":", 1) for line in created.stdout.splitlines() if ":" in line)
    key_id, secret = fields["id"].strip(), fields["api key"].strip()
    assert secret.startswith("prk_")
    database = Database(f"sqlite:///{tmp_path / 'cli.db'}")
    with database.session() as session:
        assert authenticate(session, secret) is not None
    listed = podrelay(tmp_path, "keys", "list")
    assert key_id[:12] in listed.stdout
    assert secret not in listed.stdout
    revoked = podrelay(tmp_path, "keys", "revoke", key_id)
    assert revoked.returncode == 0
    with database.session() as session:
        assert authenticate(session, secret) is None
    missing = podrelay(tmp_path, "keys", "revoke", "key_nope")
    assert (missing.returncode, missing.stderr.strip()) == (1, "error: no key key_nope")
    database.dispose()


def test_bad_configuration_is_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "keys", "list"],
        cwd=tmp_path,
        env={**os.environ, "RUNPOD_URL": "https://api.runpod.ai/v2/abc/run", "RUNPOD_API_KEY": ""},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == "error: RUNPOD_API_KEY is not set"


def test_simulator_rejects_unknown_knobs(tmp_path: Path) -> None:
    result = podrelay(tmp_path, "simulator", "--set", "no_such_knob=1")
    assert result.returncode == 2
    assert result.stderr.startswith("error: no_such_knob")


def test_console_script_lists_every_command(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "podrelay"
    result = subprocess.run(
        [script, "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    for command in ("dev", "run", "simulator", "worker", "bench", "generate", "status", "cancel"):
        assert f" {command} " in result.stdout, command


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["generate", "a fox", "-n", "0"], "Invalid value for '-n' / '--count'"),
        (["generate", "a fox", "--width", "wide"], "Invalid value for '--width'"),
        (["generate", "a fox", "--no-such-option"], "No such option: --no-such-option"),
        (["status"], "Missing argument 'job_id'"),
        (["bench", "nope"], "Invalid value for 'which'"),
        (["bench", "all", "--requests", "5"], "extra arguments go to one benchmark"),
    ],
)
def test_bad_input_is_one_error_line(tmp_path: Path, args: list[str], expected: str) -> None:
    result = run_podrelay(*args, env=clean_env(), cwd=tmp_path)
    assert_error_line(result, expected)


@pytest.mark.parametrize(
    "args", [["generate", "a fox", "--wait"], ["status", "job_x"], ["cancel", "job_x"]]
)
def test_unreachable_api_is_one_error_line(tmp_path: Path, args: list[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = run_podrelay(*args, env=clean_env(PODRELAY_API_URL=url), cwd=tmp_path)
    assert_error_line(result, f"cannot reach the Podrelay API at {url} (")
    assert result.returncode == 1


def test_invalid_api_url_is_one_error_line(tmp_path: Path) -> None:
    result = run_podrelay(
        "status", "job_x", "--api-url", "ftp://example", env=clean_env(), cwd=tmp_path
    )
    assert_error_line(result, "invalid API URL 'ftp://example'")


def test_bench_runs_a_benchmark_with_its_own_arguments(tmp_path: Path) -> None:
    result = run_podrelay(
        "bench", "client-overhead", "--requests", "60", "--rounds", "1",
        env=clean_env(), cwd=tmp_path, timeout=240,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "client/bare throughput ratio:" in result.stdout
    assert "== client-overhead: -m bench.client_overhead --requests 60" in result.stderr


def test_stack_runs_the_simulator_only_without_runpod_settings() -> None:
    local = Settings(_env_file=None, simulator_port=18001)
    names = [service.name for service in stack_services(local, port=18000)]
    assert names == ["simulator", "api", "worker"]
    simulator, api, _ = stack_services(local, port=18000)
    assert simulator.argv[-2:] == ["--port", "18001"]
    assert api.argv[-2:] == ["--port", "18000"]
    hosted = Settings(
        _env_file=None,
        runpod_url="https://api.runpod.ai/v2/abc123/run",
        runpod_api_key="rp_key",
        redis_url="redis://127.0.0.1:6379/5",
        database_url="postgresql+psycopg://postgres@127.0.0.1:5432/podrelay",
    )
    assert [service.name for service in stack_services(hosted)] == ["api", "worker"]
