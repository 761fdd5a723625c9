"""Handing work to the workers: Celery messages sent by task name, so the jobs domain never
imports the tasks module (which imports it). A message is only ever a nudge: the ledger holds
the work, and the tracker finds whatever a lost message was about."""

from typing import Any

from app.celery_app import TASKS_MODULE, celery_app


def send_task(name: str, *args: Any) -> None:
    """Send `app.tasks.runpod_tasks.<name>(*args)`; its queue comes from `TASK_ROUTES`. Nobody
    waits for these tasks' results (the ledger has them), so none is subscribed to."""
    celery_app.send_task(f"{TASKS_MODULE}.{name}", args=args, ignore_result=True)
