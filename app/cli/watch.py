"""`generate --wait`: one progress bar per job, polled until every job has settled."""

import time

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from podrelay_client import Job, Podrelay

POLL_INTERVAL_S = 0.5
# How far along a job is, by status; a terminal status fills the bar.
_STAGE = {"pending": 0.1, "queued": 0.3, "running": 0.6}


def watch_jobs(api: Podrelay, job_ids: list[str]) -> list[Job]:
    """Poll each job's status until all have settled; returns them in the given order."""
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[state]:<10}"),
        TimeElapsedColumn(),
    )
    jobs: dict[str, Job] = {}
    with Progress(*columns, console=Console(stderr=True)) as progress:
        bars = {job_id: progress.add_task(job_id, total=1.0, state="pending") for job_id in job_ids}
        while True:
            for job_id in job_ids:
                if job_id in jobs and jobs[job_id].settled:
                    continue
                job = jobs[job_id] = api.status(job_id)
                state = str(job.status)
                if state == "completed" and not job.settled:
                    state = "storing"
                done = 1.0 if job.settled else _STAGE.get(job.status, 0.9)
                progress.update(bars[job_id], completed=done, state=state)
            if all(job.settled for job in jobs.values()) and len(jobs) == len(job_ids):
                return [jobs[job_id] for job_id in job_ids]
            time.sleep(POLL_INTERVAL_S)
