"""What one run of the in-flight benchmark measured, and how it is shown: a table and JSON."""

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

# The issues' targets for 10,000 in-flight jobs.
MAX_LAG_P99_S = 0.5
MAX_CALLS_PER_JOB = 2.0
MAX_WORKER_RSS_MB = 300.0
MAX_CPU_MS_PER_JOB = 8.0  # webhook mode
MIN_DISPATCH_SHARE = 0.9  # of RunPod's /run allowance, per worker process


@dataclass
class Result:
    label: str
    jobs: int  # enqueued by the benchmark
    wall_s: float  # from the first enqueue to the end of the measurement
    runpod_jobs: int  # jobs the simulator created
    peak_in_flight: int  # most jobs queued or running at the simulator at once
    completed: int
    duplicates: int  # extra RunPod jobs for one input
    calls: dict[str, int]
    responses_429: int
    peak_rss_mb: float
    cpu_s: float
    lost: int | None = None  # not terminal at the end, or missing from the ledger
    other_terminal: dict[str, int] = field(default_factory=dict)
    images_stored: int | None = None
    completed_at_runpod_only: int | None = None  # RunPod completed them, the ledger says not
    webhooks: dict[str, int] = field(default_factory=dict)  # the simulator's delivery counts
    lag_s: dict[str, float] = field(default_factory=dict)  # p50, p99, max
    accepted_per_s: float | None = None  # jobs RunPod accepted per second of submitting
    allowance_per_s: float | None = None  # RunPod's /run allowance per second
    workers: int = 1  # worker processes (each with its dispatcher)
    expired_before_submission: int | None = None  # timed out in Podrelay's queue
    status_max_10s: int | None = None
    status_limit: int | None = None
    # The share of all the machine's CPU time busy during the run (every process, not only ours).
    machine_busy: float | None = None

    @property
    def calls_per_job(self) -> float:
        return sum(self.calls.values()) / max(1, self.runpod_jobs)

    @property
    def cpu_ms_per_job(self) -> float:
        return 1000 * self.cpu_s / max(1, self.completed)

    @property
    def dispatch_share(self) -> float | None:
        """Jobs RunPod accepted per second against its /run allowance."""
        if self.accepted_per_s is None or not self.allowance_per_s:
            return None
        return self.accepted_per_s / self.allowance_per_s

    def targets(self) -> dict[str, bool]:
        """The issue's targets that apply to this run, and whether each was met."""
        if self.lost is None:
            return {}
        met = {"0 lost": self.lost == 0, "every job completed": self.completed == self.jobs}
        met["0 expired before submission"] = self.expired_before_submission == 0
        if self.status_limit is None:  # webhook mode
            met["0 duplicates"] = self.duplicates == 0
            met[f"CPU <= {MAX_CPU_MS_PER_JOB:g} ms/job"] = self.cpu_ms_per_job <= MAX_CPU_MS_PER_JOB
            met[f"lag p99 <= {MAX_LAG_P99_S} s"] = self.lag_s.get("p99", math.inf) <= MAX_LAG_P99_S
            met[f"<= {MAX_CALLS_PER_JOB:g} calls/job"] = self.calls_per_job <= MAX_CALLS_PER_JOB
            met[f"RSS <= {MAX_WORKER_RSS_MB:g} MB"] = self.peak_rss_mb <= MAX_WORKER_RSS_MB
        else:
            met["status rate <= limit"] = (self.status_max_10s or 0) <= self.status_limit
        return met


def percentiles(values: list[float]) -> dict[str, float]:
    """Nearest-rank p50 and p99 plus the maximum; empty when there are no values."""
    if not values:
        return {}
    ordered = sorted(values)

    def rank(p: float) -> float:
        return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]

    return {"p50": rank(50), "p99": rank(99), "max": ordered[-1]}


def _lag(result: Result) -> str:
    if not result.lag_s:
        return "-"
    lag = result.lag_s
    return f"{lag['p50']:.3f} / {lag['p99']:.3f} / {lag['max']:.2f}"


def _share(result: Result) -> str:
    share = result.dispatch_share
    if share is None or result.allowance_per_s is None:
        return "-"
    return f"{share:.0%} of {result.allowance_per_s:g}/s"


def _opt(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _rows(result: Result) -> dict[str, str]:
    ops = ", ".join(
        f"{op} {count / max(1, result.runpod_jobs):.2f}"
        for op, count in sorted(result.calls.items())
    )
    others = ", ".join(f"{status} {n}" for status, n in sorted(result.other_terminal.items()))
    status_rate, rate = "-", result.accepted_per_s
    if result.status_limit is not None:
        status_rate = f"{_opt(result.status_max_10s)} / {result.status_limit:,}"
    return {
        "jobs enqueued": f"{result.jobs:,}",
        "RunPod jobs created": f"{result.runpod_jobs:,}",
        "worker processes": str(result.workers),
        "accepted by RunPod per s": "-" if rate is None else f"{rate:.1f}",
        "  against the /run allowance": _share(result),
        "expired before submission": _opt(result.expired_before_submission),
        "peak in flight at RunPod": f"{result.peak_in_flight:,}",
        "completed": f"{result.completed:,}",
        "other final states": others or "-",
        "lost": _opt(result.lost),
        "completed at RunPod, not in ledger": _opt(result.completed_at_runpod_only),
        "duplicates": f"{result.duplicates:,}",
        "images stored": _opt(result.images_stored),
        "webhook attempts / failed": (
            f"{result.webhooks['attempts']:,} / {result.webhooks['failed']:,}"
            if result.webhooks.get("attempts")
            else "-"
        ),
        "lag to ledger p50/p99/max s": _lag(result),
        "RunPod calls per job": f"{result.calls_per_job:.2f}",
        "  by operation": ops or "-",
        "  answered 429": f"{result.responses_429:,}",
        "max /status per 10 s / limit": status_rate,
        "worker peak RSS MB": f"{result.peak_rss_mb:.0f}",
        "worker CPU s (ms per completed job)": f"{result.cpu_s:.1f} ({result.cpu_ms_per_job:.1f})",
        "wall time s": f"{result.wall_s:.1f}",
    }


def print_table(results: list[Result], title: str) -> None:
    table = Table(title=title)
    table.add_column("")
    for result in results:
        table.add_column(result.label, justify="right")
    rows = [_rows(result) for result in results]
    for name in rows[0]:
        table.add_row(name, *(row[name] for row in rows))
    console = Console()
    if not console.is_terminal:
        console = Console(width=120)  # a file or pipe: do not squeeze the table into 80 columns
    console.print(table)
    for result in results:
        for target, met in result.targets().items():
            console.print(f"{result.label}: {target}: {'met' if met else 'MISSED'}")


def write_json(path: Path, results: list[Result], config: dict[str, Any]) -> None:
    document = {
        "config": config,
        "results": {
            result.label: {
                **asdict(result),
                "calls_per_job": result.calls_per_job,
                "cpu_ms_per_job": result.cpu_ms_per_job,
                "dispatch_share": result.dispatch_share,
                "targets": result.targets(),
            }
            for result in results
        },
    }
    path.write_text(json.dumps(document, indent=2) + "\n")
