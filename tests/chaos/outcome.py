"""What a chaos scenario did to the jobs: lost, duplicated at RunPod, stuck, time to recover.

- lost: accepted by an API (202) but not in the ledger, or never terminal;
- duplicated: one request run twice. A RunPod job beyond the first that no unconfirmed
  submission explains (a /run whose answer was lost, or a worker killed before it recorded
  the answer), a second submission RunPod accepted with a confirmed answer, more than one
  RunPod job still live, more than one result in the ledger, or two ledger jobs for one
  request;
- moved, not duplicated: a job RunPod held in the queue of an endpoint out of rotation, whose
  cancel there RunPod confirmed (`CANCELLED`), then run at another endpoint. A move the
  endpoint counted no cancel for is a duplicate (the simulator's count, since the job itself
  may be gone: a TTL deletes cancelled jobs too);
- stuck: not terminal (or an image download still due) when the recovery window closed.

RunPod jobs that a lost answer explains are counted apart ("orphans"): the ledger cannot know
their id until their webhook arrives, so some may run to the end; their result is discarded.
"""

import json
import math
import os
import statistics
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select

from app.jobs.models import Job
from app.jobs.service import MOVED
from app.services.generation_defaults import GenerationParams, build_runpod_input
from app.simulator.counters import fingerprint
from tests.chaos.cluster import Cluster
from tests.stack.deployment import WorkerStack
from tests.stack.ledger_views import JobView

RESULTS_ENV = "PODRELAY_CHAOS_RESULTS"
_LIVE = frozenset({"IN_QUEUE", "IN_PROGRESS"})
_UNCONFIRMED = frozenset({"ambiguous", "sending"})


@dataclass
class Outcome:
    scenario: str
    fault: str
    mode: str
    jobs: int
    submitted: int
    refused: int
    lost: int
    duplicated: int
    stuck: int
    recovery_s: float | None
    statuses: dict[str, int]
    orphans: dict[str, int]
    api_retries: int
    runpod_jobs: int
    details: list[str] = field(default_factory=list)
    notes: str = ""  # what the scenario measured besides the counts
    moves: int = 0  # jobs moved off an endpoint after RunPod confirmed their cancel there

    def summary(self) -> str:
        recovery = "never" if self.recovery_s is None else f"{self.recovery_s:.1f} s"
        return (
            f"{self.scenario} ({self.mode}): submitted {self.submitted}/{self.jobs}, "
            f"lost {self.lost}, duplicated {self.duplicated}, stuck {self.stuck}, "
            f"recovered in {recovery}; statuses {self.statuses}; orphans {self.orphans}; "
            f"API retries {self.api_retries}; RunPod jobs {self.runpod_jobs}; moves {self.moves}"
            + (f"; {self.notes}" if self.notes else "")
        )


def wait_recovered(stack: WorkerStack, expected: int, *, window_s: float) -> float | None:
    """Wait until the ledger holds `expected` jobs or more, all settled; returns when that
    happened (monotonic), or None if the window closed first."""
    deadline = time.monotonic() + window_s
    while time.monotonic() < deadline:
        now = stack.progress()
        if now.jobs >= expected and now.jobs == now.terminal and now.pending_images == 0:
            return time.monotonic()
        time.sleep(0.5)
    return None


def wait_runpod_idle(stack: WorkerStack, *, timeout: float = 30.0) -> None:
    """Give RunPod time to finish what is cancelled or ends by itself (not an assertion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        by_status: dict[str, int] = stack.simulator.counters()["jobs_by_status"]
        if not any(by_status.get(status, 0) for status in _LIVE):
            return
        time.sleep(0.5)


def _fingerprint(prompt: str, negative_prompt: str | None, params: dict[str, Any]) -> str:
    """The fingerprint the simulator gives the RunPod input this ledger job is sent as."""
    generation = GenerationParams.model_validate(params)
    return fingerprint(build_runpod_input(prompt, negative_prompt, generation))


def _final(job: JobView) -> str:
    return f"{job.status} ({job.error_code})" if job.error_code else job.status


def assess(
    cluster: Cluster,
    *,
    scenario: str,
    fault: str,
    jobs: int,
    fault_ended: float,
    recovered_at: float | None,
) -> Outcome:
    stack = cluster.stack
    accepted = set(cluster.job_ids())
    ledger = {job.id: job for job in stack.jobs()}
    with stack.db.session() as session:
        rows = session.execute(select(Job.id, Job.prompt, Job.negative_prompt, Job.params))
        inputs = {row.id: _fingerprint(row.prompt, row.negative_prompt, row.params) for row in rows}
    counters = stack.simulator.counters()
    created: dict[str, int] = counters["jobs_by_fingerprint"]
    cancelled: dict[str, int] = counters["cancelled_by_fingerprint"]
    statuses = stack.simulator.statuses_by_input()
    details: list[str] = []

    missing = sorted(accepted - set(ledger))
    unfinished = [job for job in ledger.values() if not job.settled]
    details += [f"missing from the ledger: {job_id}" for job_id in missing[:20]]
    details += [f"not settled: {job.id} {job.status}" for job in unfinished[:20]]
    lost = len(missing) + sum(job.id in accepted and not job.terminal for job in unfinished)

    duplicated = len(set(ledger) - accepted)  # a request that made a second ledger job
    details += [f"ledger job no client was given: {job_id}" for job_id in set(ledger) - accepted]
    orphans: Counter[str] = Counter()
    cancelled_at: dict[str, dict[str, int]] = {}  # each endpoint's cancels, by input
    moves = 0
    for job in ledger.values():
        runpod = statuses.get(inputs[job.id], [])
        moved = Counter(s.endpoint or "" for s in job.submissions if s.outcome == MOVED)
        moves += moved.total()
        for endpoint in moved.keys() - cancelled_at.keys():
            cancelled_at[endpoint] = stack.simulator.counters(endpoint)["cancelled_by_fingerprint"]
        ran = [
            endpoint
            for endpoint, count in moved.items()
            if cancelled_at[endpoint].get(inputs[job.id], 0) < count
        ]
        extra = created.get(inputs[job.id], 0) - 1 - moved.total()
        confirmed = sum(s.outcome == "accepted" for s in job.submissions)
        unconfirmed = sum(s.outcome in _UNCONFIRMED for s in job.submissions)
        live = sum(status in _LIVE for status in runpod)
        results = len(job.terminal_events)
        reasons = [
            f"{extra} extra RunPod jobs, {unconfirmed} unconfirmed submissions"
            if extra > unconfirmed
            else "",
            f"{confirmed} accepted submissions" if confirmed > 1 else "",
            f"{live} live RunPod jobs" if live > 1 else "",
            f"{results} results in the ledger" if results > 1 else "",
            f"moved off {', '.join(ran)} without RunPod's CANCELLED there" if ran else "",
        ]
        if any(reasons):
            duplicated += 1
            details.append(f"duplicate {job.id}: {'; '.join(r for r in reasons if r)}")
        elif extra > 0:
            orphans["orphans"] += extra
            orphans["ran_to_end"] += max(0, runpod.count("COMPLETED") - 1)
            orphans["cancelled"] += cancelled.get(inputs[job.id], 0) - moved.total()
    refused = len(cluster.submissions.refused)
    details += [f"refused {key}: {error}" for key, error in cluster.submissions.refused.items()]
    return Outcome(
        scenario=scenario,
        fault=fault,
        mode="webhook" if stack.settings.webhook_base_url else "polling",
        jobs=jobs,
        submitted=len(accepted),
        refused=refused,
        lost=lost,
        duplicated=duplicated,
        stuck=len(unfinished),
        recovery_s=None if recovered_at is None else round(recovered_at - fault_ended, 1),
        statuses=dict(Counter(_final(job) for job in ledger.values())),
        orphans=dict(orphans),
        api_retries=cluster.submissions.retries,
        runpod_jobs=counters["jobs_created"],
        details=details[:60],
        moves=moves,
    )


def record(outcome: Outcome) -> None:
    """Add the outcome to the results file `PODRELAY_CHAOS_RESULTS` names, if it names one."""
    target = os.environ.get(RESULTS_ENV)
    if not target:
        return
    path = Path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    results[outcome.scenario] = asdict(outcome)
    path.write_text(json.dumps(results, indent=2) + "\n")


def trickle_waits(cluster: Cluster) -> str:
    """How long the trickling keys' jobs waited, from acceptance to RunPod's."""
    ids = cluster.trickled_job_ids()
    with cluster.stack.db.session() as session:
        rows = session.execute(
            select(Job.created_at, Job.submitted_at).where(Job.id.in_(ids))
        ).all()
    waits = sorted((sent - made).total_seconds() for made, sent in rows if sent is not None)
    if not waits:
        return "the trickling keys had no job accepted by RunPod"
    p99 = waits[max(0, math.ceil(0.99 * len(waits)) - 1)]
    return (
        f"the trickling keys' {len(waits)} jobs waited {statistics.median(waits):.1f} s "
        f"(p50), {p99:.1f} s (p99) from acceptance to RunPod's"
    )


def completed_by_endpoint(cluster: Cluster) -> str:
    """Which endpoints completed the jobs, for a scenario on a route of several."""
    with cluster.stack.db.session() as session:
        rows = session.execute(
            select(Job.endpoint).where(Job.id.in_(cluster.job_ids()), Job.status == "completed")
        ).scalars()
        counts = Counter(endpoint or "none" for endpoint in rows)
    done = ", ".join(f"{count} at {endpoint}" for endpoint, count in sorted(counts.items()))
    return f"jobs completed: {done or 'none'}"
