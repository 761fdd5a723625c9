"""Per-process resources for Celery tasks: one JobEngine and one event loop thread, and the
worker's dispatcher (`app.jobs.dispatch`), started on that loop when the worker is ready.

Tasks are synchronous; their async work runs on a loop that lives as long as the process, so
the RunPod client's connection pool is shared by every task the process runs. A forked child
notices the new pid and builds its own. Tracing, when configured, starts with the worker
(`app.core.tracing`).
"""

import asyncio
import concurrent.futures
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from celery.signals import worker_init, worker_process_init, worker_ready, worker_shutdown

from app.core.config import settings_or_exit
from app.core.logging import configure_logging
from app.core.migrate import upgrade_database
from app.core.tracing import WORKER_SERVICE, configure_tracing, in_current_context
from app.jobs.dispatch import Dispatcher
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
    """Run a coroutine on the process's loop, in the caller's trace context (the task's
    span), and wait for its result."""
    loop = _current().loop
    return asyncio.run_coroutine_threadsafe(in_current_context(coroutine), loop).result()


_dispatcher: "concurrent.futures.Future[None] | None" = None


@worker_init.connect
@worker_process_init.connect
def start_tracing(**_: Any) -> None:
    """In the worker before its pool starts, and in each prefork child as it starts, so that
    every task's span is recorded."""
    configure_tracing(settings_or_exit(), service=WORKER_SERVICE)


@worker_ready.connect
def start_dispatcher(**_: Any) -> None:
    """One dispatcher per worker, whatever its pool: in the process that runs the consumer."""
    global _dispatcher
    runtime = _current()
    _dispatcher = asyncio.run_coroutine_threadsafe(Dispatcher(runtime.engine).run(), runtime.loop)


@worker_shutdown.connect
def stop_dispatcher(**_: Any) -> None:
    if _dispatcher is not None:
        _dispatcher.cancel()
