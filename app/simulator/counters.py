"""What the simulator has seen, for tests and benchmarks (`GET /_sim/counters`).

Counted per endpoint id (`?endpoint=...`); the simulator-wide counters are their sum.
"""

import hashlib
import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any


def fingerprint(value: Any) -> str:
    """Hash a job input canonically, so resubmitting the same input shows up as a duplicate."""
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _webhook_counts() -> dict[str, int]:
    return {"attempts": 0, "delivered": 0, "failed": 0, "dropped": 0}


@dataclass
class Counters:
    calls: Counter[str] = field(default_factory=Counter)
    responses: defaultdict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    jobs_created: int = 0
    jobs_by_fingerprint: Counter[str] = field(default_factory=Counter)
    # Kept apart from the jobs because a job's TTL deletes it even after it was cancelled.
    cancelled_by_fingerprint: Counter[str] = field(default_factory=Counter)
    webhooks: dict[str, int] = field(default_factory=_webhook_counts)

    def clear(self) -> None:
        self.calls.clear()
        self.responses.clear()
        self.jobs_created = 0
        self.jobs_by_fingerprint.clear()
        self.cancelled_by_fingerprint.clear()
        self.webhooks.update(_webhook_counts())

    def add(self, other: "Counters") -> None:
        self.calls.update(other.calls)
        for op, codes in other.responses.items():
            self.responses[op].update(codes)
        self.jobs_created += other.jobs_created
        self.jobs_by_fingerprint.update(other.jobs_by_fingerprint)
        self.cancelled_by_fingerprint.update(other.cancelled_by_fingerprint)
        for name, count in other.webhooks.items():
            self.webhooks[name] += count

    def record_job(self, job_input: Any) -> None:
        self.jobs_created += 1
        self.jobs_by_fingerprint[fingerprint(job_input)] += 1

    def record_cancel(self, job_input: Any) -> None:
        self.cancelled_by_fingerprint[fingerprint(job_input)] += 1

    def as_dict(self, jobs_by_status: dict[str, int]) -> dict[str, Any]:
        return {
            "calls": dict(self.calls),
            "responses": {
                op: {str(code): n for code, n in codes.items()}
                for op, codes in self.responses.items()
            },
            "jobs_created": self.jobs_created,
            "jobs_by_fingerprint": dict(self.jobs_by_fingerprint),
            "cancelled_by_fingerprint": dict(self.cancelled_by_fingerprint),
            "webhooks": dict(self.webhooks),
            "jobs_by_status": jobs_by_status,
        }


class CounterBook:
    """Counters per endpoint id."""

    def __init__(self) -> None:
        self._by_endpoint: dict[str, Counters] = {}

    def of(self, endpoint_id: str) -> Counters:
        """The endpoint's counters, to record into."""
        return self._by_endpoint.setdefault(endpoint_id, Counters())

    def read(self, endpoint_id: str | None = None) -> Counters:
        """One endpoint's counters (zero if it saw nothing), or with None the sum of all."""
        if endpoint_id is not None:
            return self._by_endpoint.get(endpoint_id, Counters())
        total = Counters()
        for counters in self._by_endpoint.values():
            total.add(counters)
        return total

    def clear(self) -> None:
        self._by_endpoint.clear()
