"""A private, non-persistent `redis-server` on a free port (never the system one)."""

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import redis

from app.devstack import start_process, stop_process
from tests.stack.waiting import free_port, wait_until


class RedisServer:
    """Started and stopped by the test; each start logs to its own file in `folder`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        if self.process is not None and self.process.poll() is None:
            raise RuntimeError("redis-server is already running")
        self.starts += 1
        argv = [
            "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--daemonize", "no",
            "--dir", str(self.folder),
        ]  # fmt: skip
        self.folder.mkdir(parents=True, exist_ok=True)
        self.process = start_process(
            argv, env=dict(os.environ), log_path=self.folder / f"redis-{self.starts}.log"
        )
        client = redis.Redis(port=self.port, socket_timeout=1.0)
        try:
            wait_until(self._answers(client), timeout=15, what="redis-server answers PING")
        finally:
            client.close()

    def _answers(self, client: redis.Redis) -> Callable[[], bool]:
        def ping() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"redis-server exited with {self.process.returncode}")
            try:
                return bool(client.ping())
            except redis.RedisError:
                return False

        return ping

    def kill(self) -> None:
        """SIGKILL: everything it held is gone (it keeps nothing on disk)."""
        if self.process is not None:
            stop_process(self.process, kill=True)
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
            self.process = None
