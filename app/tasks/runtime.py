"""Per-process resources for Celery tasks: one JobEngine and one event loop thread.

Tasks are synchronous; their async work runs on a loop that lives as long as the process, so
the RunPod client's connection pool is shared by every task the process runs. A forked child
notices the new pid and builds its own.
"""

import asyncio
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from app.core.config import settings_or_exit
from app.core.logging import configure_logging
from app.core.migrate import upgrade_database
from app.jobs.engine import JobEngine

T = TypeVar("T")


class _Runtime:
    def __init__(self) -> None:
        settings = settings_or_exit()
        configure_logging(settings)
        self.engine = JobEngine.from_settings(settings)
        upgrade_database(self.engine.db)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="podrelay-loop", daemon=True
        )
        self.thread.start()


_lock = threading.Lock()
_runtime: _Runtime | None = None
_runtime_pid: int | None = None


def _current() -> _Runtime:
    global _runtime, _runtime_pid
    with _lock:
        if _runtime is None or _runtime_pid != os.getpid():
            _runtime, _runtime_pid = _Runtime(), os.getpid()
        return _runtime


def get_engine() -> JobEngine:
    return _current().engine


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on the process's loop and wait for its result."""
    return asyncio.run_coroutine_threadsafe(coroutine, _current().loop).result()
