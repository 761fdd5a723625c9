"""Ledger writes that must outlive a short database outage (a restart, a failover).

What a worker learned from RunPod in the meantime lives only in its memory: a RunPod id just
accepted, a status just read. Given up, the job would wait out its lease, and a lost RunPod id
means a second submission. So such writes are retried while the job's lease still holds.
"""

import asyncio
from collections.abc import Callable
from typing import Concatenate, ParamSpec, TypeVar

from loguru import logger
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session

from app.core.db import Database

P = ParamSpec("P")
T = TypeVar("T")
_FIRST_DELAY_S = 0.5
_MAX_DELAY_S = 5.0


async def write_patiently(
    db: Database,
    deadline: float,
    write: Callable[Concatenate[Session, P], T],
    *args: P.args,
    **kwargs: P.kwargs,
) -> T:
    """Run `write(session, ...)` as one unit of work in a thread (it may store images too:
    `Database.run_in_thread`), again while the database is unreachable, until the event loop's
    clock reaches `deadline`; then its error propagates. Being one transaction, a failed
    attempt leaves nothing behind.
    """
    loop = asyncio.get_running_loop()
    delay = _FIRST_DELAY_S
    while True:
        try:
            return await db.run_in_thread(write, *args, **kwargs)
        except (OperationalError, InterfaceError) as error:
            if loop.time() + delay > deadline:
                raise
            logger.warning(
                "[RUNPOD TASK] the ledger is unreachable; {} again in {}s: {}",
                getattr(write, "__name__", "the write"),
                delay,
                error,
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, _MAX_DELAY_S)
