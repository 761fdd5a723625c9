"""What the API does around recording submissions: the asyncio ledger engine that records them
on PostgreSQL (`app.jobs.bulk_record`), and handing the recorded jobs to the workers."""

import asyncio
import time

from loguru import logger
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.core.db import normalize_database_url
from app.tasks.runpod_tasks import submit_jobs_task

# The most jobs handed to the workers in one message, and how often one is sent under load.
MESSAGE_JOBS = 500
SEND_EVERY_S = 0.1


def ledger_engine(url: str) -> AsyncEngine | None:
    """An asyncio engine (psycopg's async mode) on the same PostgreSQL database, each statement
    its own transaction; None for SQLite, whose writes stay in worker threads."""
    url = normalize_database_url(url)
    if make_url(url).get_backend_name() != "postgresql":
        return None
    return create_async_engine(
        url, isolation_level="AUTOCOMMIT", pool_pre_ping=True, pool_size=4, max_overflow=4
    )


def enqueue_submissions(job_ids: list[str]) -> None:
    """Hand committed jobs to the workers in one message."""
    if not job_ids:
        return
    try:
        submit_jobs_task.delay(job_ids)
    except Exception as error:  # noqa: BLE001 - any broker failure is recovered the same way
        # A lost message is not a lost job: the tracker submits pending jobs that are due.
        logger.warning("could not enqueue {} jobs now, the tracker will: {}", len(job_ids), error)


class SubmissionQueue:
    """Hands committed jobs to the workers from the background: a 202 does not wait for the
    broker. The first job after a quiet spell goes at once; while jobs keep coming, those
    committed within `SEND_EVERY_S` share one message. The jobs are in the ledger before they
    are queued here, so a message lost with the process loses no job (the tracker sends it)."""

    def __init__(self) -> None:
        self._job_ids: list[str] = []
        self._sending: asyncio.Task[None] | None = None

    def put(self, job_ids: list[str]) -> None:
        self._job_ids.extend(job_ids)
        if self._sending is None or self._sending.done():
            self._sending = asyncio.get_running_loop().create_task(self._send())

    async def _send(self) -> None:
        while self._job_ids:
            sent_at = time.monotonic()
            job_ids = self._job_ids[:MESSAGE_JOBS]
            del self._job_ids[:MESSAGE_JOBS]
            await asyncio.to_thread(enqueue_submissions, job_ids)
            if self._job_ids:
                await asyncio.sleep(SEND_EVERY_S - (time.monotonic() - sent_at))

    async def aclose(self) -> None:
        if self._sending is not None:
            await self._sending
