"""The `podrelay` command line, run as a user would."""

import os
import subprocess
import sys
from pathlib import Path

from app.accounts.service import authenticate
from app.core.db import Database


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
