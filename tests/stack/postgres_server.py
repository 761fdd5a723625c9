"""A private PostgreSQL cluster a test may stop and start (never the system one).

`initdb` and `pg_ctl` refuse to run as root, so as root they run as the `postgres` user, in a
temporary folder it owns. The cluster listens on 127.0.0.1 on a free port, trusts local
connections, and is deleted on `close()`.
"""

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg

from tests.stack.waiting import free_port, wait_until

PG_BIN = Path("/usr/lib/postgresql/15/bin")
_START_TIMEOUT_S = 60


class PostgresServer:
    def __init__(self) -> None:
        if not (PG_BIN / "initdb").exists():
            raise AssertionError(f"PostgreSQL 15's server binaries are required in {PG_BIN}")
        self.folder = Path(tempfile.mkdtemp(prefix="podrelay-chaos-pg-"))
        self.data = self.folder / "data"
        self.port = free_port()
        self.starts = 0
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            shutil.chown(self.folder, user="postgres", group="postgres")
        self._run(PG_BIN / "initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres")

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *argv: str | Path) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if self._as_postgres else []
        done = subprocess.run(
            [*prefix, *map(str, argv)], capture_output=True, text=True, timeout=120, check=False
        )
        if done.returncode != 0:
            raise AssertionError(f"{argv[0]} failed ({done.returncode}):\n{done.stderr[-2000:]}")

    def start(self) -> None:
        self.starts += 1
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.folder}"
        options += " -c max_connections=300 -c fsync=off"
        log = self.folder / f"postgres-{self.starts}.log"
        self._run(PG_BIN / "pg_ctl", "-D", str(self.data), "-l", str(log), "-o", options, "start")
        wait_until(self._answers, timeout=_START_TIMEOUT_S, what="private PostgreSQL answers")

    def _answers(self) -> bool:
        try:
            with psycopg.connect(self.admin_url, connect_timeout=2) as connection:
                connection.execute("SELECT 1")
            return True
        except psycopg.OperationalError:
            return False

    def stop(self, *, mode: str = "fast") -> None:
        """`immediate` is a crash: no checkpoint, every connection cut at once."""
        self._run(PG_BIN / "pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def close(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self.stop(mode="immediate")
        shutil.rmtree(self.folder, ignore_errors=True)
