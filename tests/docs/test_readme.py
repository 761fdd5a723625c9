"""The README's configuration table is generated from `Settings` and kept current, and its
first screen stays what it is: what Podrelay is, `make run`, `make test` and a curl example."""

import shutil
import subprocess
import sys
from pathlib import Path

from app.core.config import Settings
from app.core.settings_doc import END, START, render_table, replace_table
from tests.docs.helpers import ROOT, code_blocks

README = ROOT / "README.md"


def settings_doc(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.core.settings_doc", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_every_setting_is_described() -> None:
    missing = [name for name, field in Settings.model_fields.items() if not field.description]
    assert not missing, f"Settings fields without a description: {missing}"


def test_readme_table_is_current() -> None:
    text = README.read_text()
    assert replace_table(text, render_table()) == text, (
        "README's settings table is stale: run `python -m app.core.settings_doc --write README.md`"
    )
    table = text.split(START, 1)[1].split(END, 1)[0]
    for name in Settings.model_fields:
        assert f"| `{name.upper()}` |" in table


def test_check_and_write_commands(tmp_path: Path) -> None:
    assert settings_doc("--check", "README.md").returncode == 0
    stale = tmp_path / "README.md"
    shutil.copy(README, stale)
    text = stale.read_text()
    stale.write_text(text.replace("| `REDIS_URL` |", "| `REDIS_URI` |"))
    checked = settings_doc("--check", str(stale))
    assert checked.returncode == 1
    assert "stale" in checked.stderr
    assert settings_doc("--write", str(stale)).returncode == 0
    assert stale.read_text() == text
    printed = settings_doc()
    assert printed.returncode == 0
    assert printed.stdout == render_table() + "\n"
    unmarked = tmp_path / "plain.md"
    unmarked.write_text("# no markers\n")
    assert settings_doc("--write", str(unmarked)).returncode == 2


def test_first_screen_is_what_and_how_to_start() -> None:
    first_screen = README.read_text().split("\n## ", 1)[0]
    assert first_screen.startswith("# Podrelay\n\nPodrelay is an open-source job gateway")
    for command in ("make run", "make test", "curl -X POST http://localhost:8000/api/v1/runpod"):
        assert command in first_screen
    # A five-line example of each SDK (run by tests/docs/test_commands.py).
    python, typescript = code_blocks(first_screen, "python"), code_blocks(first_screen, "ts")
    assert [len(block.strip().splitlines()) for block in python + typescript] == [5, 5]
    assert "from podrelay_client import Podrelay" in python[0]
    assert 'from "@podrelay/client"' in typescript[0]
    assert len(first_screen.splitlines()) <= 50
