"""Building a test's stacks, and tearing all of them down: `StackFactory`, `stack_factory`.

`StackFactory.close()` stops every process it started, then the Redis servers and the
simulators, then drops the databases (in the reverse order of their making).
"""

import signal
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, Literal

from app.devstack import PG_ADMIN_URL, temporary_postgres_database
from app.simulator.config import SimulatorConfig
from app.simulator.server import SimulatorServer
from tests.stack.deployment import WorkerStack
from tests.stack.redis_server import RedisServer
from tests.stack.waiting import free_port

Ledger = Literal["sqlite", "postgresql"]
Broker = Literal["embedded", "redis"]


class StackFactory:
    """Builds stacks for one test and tears all of them down in `close()`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._cleanup = ExitStack()
        self._count = 0
        self._redis_count = 0

    def simulator(self, config: SimulatorConfig) -> SimulatorServer:
        server = SimulatorServer(config)
        server.start()
        self._cleanup.callback(server.stop)
        return server

    def redis(self) -> RedisServer:
        self._redis_count += 1
        server = RedisServer(self.folder / f"redis-{self._redis_count}")
        self._cleanup.callback(server.stop)
        server.start()
        return server

    def build(
        self,
        *,
        ledger: Ledger,
        broker: Broker,
        simulator: SimulatorServer,
        redis_server: RedisServer | None = None,
        webhooks: bool = False,
        postgres_admin_url: str = PG_ADMIN_URL,
        **overrides: Any,
    ) -> WorkerStack:
        """A stack on its own folder and database; `overrides` are Settings fields.

        With `webhooks`, PUBLIC_BASE_URL is the URL of the API that `start_api()` starts.
        A PostgreSQL ledger is a fresh database on the server `postgres_admin_url` names.
        """
        self._count += 1
        folder = self.folder / f"stack-{self._count}"
        folder.mkdir(parents=True)
        if ledger == "postgresql":
            database_url = self._cleanup.enter_context(
                temporary_postgres_database("podrelay_worker", admin_url=postgres_admin_url)
            )
        else:
            database_url = f"sqlite:///{folder / 'ledger.db'}"
        redis_url = None
        if broker == "redis":
            redis_server = redis_server or self.redis()
            redis_url = redis_server.url
        api_port = free_port() if webhooks else None
        if api_port is not None:
            overrides = {"public_base_url": f"http://127.0.0.1:{api_port}", **overrides}
        stack = WorkerStack(
            folder=folder,
            api_port=api_port,
            simulator=simulator,
            database_url=database_url,
            redis_url=redis_url,
            overrides=overrides,
        )
        self._cleanup.callback(stack.close)
        return stack

    def close(self) -> None:
        self._cleanup.close()


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextmanager
def stack_factory(folder: Path) -> Iterator[StackFactory]:
    """A `StackFactory` closed on exit, also when pytest itself is sent SIGTERM (as `timeout`
    does): its children run in their own process groups, which nothing else would stop."""
    previous = signal.signal(signal.SIGTERM, _interrupt)
    factory = StackFactory(folder)
    try:
        yield factory
    finally:
        try:
            factory.close()
        finally:
            signal.signal(signal.SIGTERM, previous)
