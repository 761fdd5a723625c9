"""Handing work to the workers: Celery messages sent by task name, so the jobs domain never
imports the tasks module (which imports it). A message is only ever a nudge: the ledger holds
the work, and the tracker finds whatever a lost message was about."""

import asyncio
import time
from typing import Any

from loguru import logger

from app.celery_app import TASKS_MODULE, celery_app

# The most jobs handed to the workers in one message, and how often one is sent under load.
MESSAGE_JOBS = 500
SEND_EVERY_S = 0.1


def send_task(name: str, *args: Any) -> None:
    """Send `app.tasks.runpod_tasks.<name>(*args)`; its queue comes from `TASK_ROUTES`. Nobody
    waits for these tasks' results (the ledger has them), so none is subscribed to."""
    celery_app.send_task(f"{TASKS_MODULE}.{name}", args=args, ignore_result=True)


def enqueue_submissions(job_ids: list[str]) -> None:
    """Ask the workers to submit committed jobs, in one message."""
    if not job_ids:
        return
    try:
        send_task("submit_jobs_task", job_ids)
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
