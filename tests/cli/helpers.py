"""Running `podrelay` as a user would, and watching the processes it leaves behind."""

import subprocess
import sys
from pathlib import Path

PODRELAY = [sys.executable, "-m", "app.cli"]


def run_podrelay(
    *args: str, env: dict[str, str], cwd: Path, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*PODRELAY, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def assert_error_line(result: subprocess.CompletedProcess[str], expected: str) -> None:
    """A failure as the CLI promises it: non-zero, nothing on stdout, one `error:` line."""
    assert result.returncode != 0, result.stdout
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {expected}"), lines[0]


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name; None once the process is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return text.rsplit(")", 1)[1].split()


def running(pid: int) -> bool:
    """Exists and is not a zombie (an exited child its parent has not reaped yet)."""
    fields = _stat(pid)
    return fields is not None and fields[0] != "Z"


def _processes() -> dict[int, list[str]]:
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) is not None:
            found[int(entry.name)] = fields
    return found


def descendants(pid: int) -> set[int]:
    """Every live process below `pid` (children, grandchildren, ...)."""
    table = _processes()
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {
            child
            for child, fields in table.items()
            if int(fields[1]) in frontier and fields[0] != "Z"
        } - found
        found |= frontier
    return found


def in_sessions(session_ids: set[int]) -> set[int]:
    """Live processes in these sessions: a child's leftovers even after they were reparented."""
    return {
        pid
        for pid, fields in _processes().items()
        if int(fields[3]) in session_ids and fields[0] != "Z"
    }


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (FileNotFoundError, ProcessLookupError):
        return ""


def in_directory(folder: Path) -> set[int]:
    """Live processes whose working directory is `folder` (what a test started there left)."""
    found = set()
    for pid, fields in _processes().items():
        try:
            if fields[0] != "Z" and Path(f"/proc/{pid}/cwd").readlink() == folder:
                found.add(pid)
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return found
