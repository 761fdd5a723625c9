"""What the admin routes report about the jobs still kept (`GET /_sim/jobs...`, counters)."""

import asyncio
import time
from collections import Counter

from app.simulator.counters import fingerprint
from app.simulator.jobs import Job, JobStatus


def finish_times(
    jobs: list[Job], since: float = 0.0, status: JobStatus | None = None
) -> dict[str, float]:
    """When each job finished at `since` (Unix time) or later, as Unix time, by job id; only
    jobs that ended in `status` when one is given. Call it on the simulator's event loop."""
    offset = time.time() - asyncio.get_running_loop().time()
    return {
        job.id: job.finished_at + offset
        for job in jobs
        if job.finished_at is not None
        and job.finished_at + offset >= since
        and status in (None, job.status)
    }


def statuses_by_input(jobs: list[Job]) -> dict[str, list[str]]:
    """The status of each job, grouped by the fingerprint of its input."""
    grouped: dict[str, list[str]] = {}
    for job in jobs:
        grouped.setdefault(fingerprint(job.input), []).append(job.status.value)
    return grouped


def jobs_by_status(jobs: list[Job]) -> dict[str, int]:
    count = Counter(job.status for job in jobs)
    return {status.value: count[status] for status in JobStatus}
