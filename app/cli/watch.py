"""`generate --wait`: one progress bar per job, polled until every job has settled."""

import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from app.cli.api import PodrelayApi

POLL_INTERVAL_S = 0.5
# How far along a job is, by status; a terminal status fills the bar.
_STAGE = {"pending": 0.1, "queued": 0.3, "running": 0.6}


def settled(job: dict[str, Any]) -> bool:
    """Terminal, and no image still being fetched from RunPod's worker."""
    terminal = job["status"] not in _STAGE
    return terminal and all(image["state"] != "pending" for image in job["images"])


def watch_jobs(api: PodrelayApi, job_ids: list[str]) -> list[dict[str, Any]]:
    """Poll each job's status until all have settled; returns them in the given order."""
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[state]:<10}"),
        TimeElapsedColumn(),
    )
    jobs: dict[str, dict[str, Any]] = {}
    with Progress(*columns, console=Console(stderr=True)) as progress:
        bars = {job_id: progress.add_task(job_id, total=1.0, state="pending") for job_id in job_ids}
        while True:
            for job_id in job_ids:
                if job_id in jobs and settled(jobs[job_id]):
                    continue
                job = api.call("GET", f"/status/{job_id}")
                jobs[job_id] = job
                state = job["status"]
                if state == "completed" and not settled(job):
                    state = "storing"
                done = 1.0 if settled(job) else _STAGE.get(job["status"], 0.9)
                progress.update(bars[job_id], completed=done, state=state)
            if all(settled(job) for job in jobs.values()) and len(jobs) == len(job_ids):
                return [jobs[job_id] for job_id in job_ids]
            time.sleep(POLL_INTERVAL_S)
