"""What the SDKs' tests share: where the clients live, a real stack's handle, and npm."""

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from app.accounts.service import create_key
from tests.stack.deployment import WorkerStack

ROOT = Path(__file__).resolve().parents[2]
CLIENTS = ROOT / "clients"
TYPESCRIPT = CLIENTS / "typescript"


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
        done = run([npm, "ci", "--no-audit", "--no-fund"], TYPESCRIPT)  # `prepare` builds dist/
        assert done.returncode == 0, done.stderr[-3000:]
    built = TYPESCRIPT / "dist" / "index.js"
    sources = (TYPESCRIPT / "src").rglob("*.ts")
    if not built.exists() or any(s.stat().st_mtime > built.stat().st_mtime for s in sources):
        done = run([npm, "run", "build"], TYPESCRIPT)
        assert done.returncode == 0, done.stdout[-3000:]
    return npm
