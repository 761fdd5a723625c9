"""Write docs/RELIABILITY.md from the chaos suite's results (`make chaos` runs this).

python -m tests.chaos.report data/chaos/results.json docs/RELIABILITY.md --fuzz-examples 300
"""

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from app.jobs.engine import RUNPOD_CONCURRENCY
from bench.machine import machine

COMMAND = "make chaos"
NODE = "tests/chaos/test_chaos.py::test_scenario_loses_duplicates_and_strands_nothing"


def _recovery(value: float | None) -> str:
    return "never" if value is None else f"{value:.1f} s"


def _counts(values: dict[str, int]) -> str:
    return ", ".join(f"{name} {n}" for name, n in sorted(values.items())) or "none"


def _row(result: dict[str, Any]) -> str:
    name = result["scenario"]
    cells = [
        f"**{name}**<br>{result['fault']}",
        result["mode"],
        f"{result['submitted']} / {result['jobs']}",
        str(result["lost"]),
        str(result["duplicated"]),
        str(result["stuck"]),
        _recovery(result["recovery_s"]),
        _counts(result["statuses"]),
        _counts(result["orphans"]),
        f"`PODRELAY_CHAOS_JOBS={result['jobs']} .venv/bin/pytest '{NODE}[{name}]'`",
    ]
    return "| " + " | ".join(cells) + " |"


def render(results: dict[str, Any], *, fuzz_examples: int | None, when: datetime) -> str:
    rows = [_row(result) for result in results.values()]
    verdict = all(r["lost"] == r["duplicated"] == r["stuck"] == 0 for r in results.values())
    lines = [
        "# Reliability",
        "",
        f"Written by `{COMMAND}` on {when:%Y-%m-%d %H:%M} UTC, on {machine()}, "
        "shared with other work at the time. Reproduce everything with `make chaos`, "
        "one scenario with the command in its row.",
        "",
        "Each scenario runs Podrelay as a user who outgrew one machine deploys it: two Celery "
        "workers and two API processes sharing one PostgreSQL database and one Redis, with the "
        "simulator as RunPod. Jobs are submitted over HTTP (`POST /api/v1/runpod/generate`, "
        "alternately to each API, retried with the same `Idempotency-Key` when refused); an "
        "outage is injected once half of them are accepted, the simulator's faults from the "
        "start (the storm) or a fifth (lost webhooks).",
        "",
        "- **lost**: accepted (202) but not in the ledger, or never terminal;",
        "- **duplicated**: one request run twice: a second RunPod job no lost `/run` answer "
        "explains, two confirmed submissions, two live RunPod jobs, two results in the ledger, "
        "or two ledger jobs for one request;",
        "- **stuck**: not terminal (or an image still to download) when the recovery window "
        "closed;",
        "- **time to recover**: from the fault's end until every job was terminal;",
        "- **orphans**: RunPod jobs made by a `/run` whose answer never reached the ledger "
        "(dropped by the network, or the worker killed before it recorded it). RunPod's `/run` "
        "takes no idempotency key, so the job is submitted again; in webhook mode the orphan is "
        "recognised by its webhook token and cancelled or kept, in polling mode it is invisible "
        "and runs to the end. The ledger keeps exactly one result either way.",
        "",
        "The one duplicate no client of RunPod can prevent: `/run` takes no idempotency key and "
        "RunPod lists no jobs, so the id of a job whose `/run` answer was lost after RunPod "
        "accepted it can never be learnt. Podrelay marks that attempt `ambiguous` (the job's "
        "timeline shows `submission_in_doubt`) and submits once more, so the request still "
        "gets its result; only the `/run` calls in flight at that moment (at most "
        f"{RUNPOD_CONCURRENCY} per worker process) can run twice, and the orphans column "
        "counts every one. Every other way to run a request twice is counted as duplicated.",
        "",
        f"Verdict: {'every scenario 0 lost, 0 duplicated, 0 stuck' if verdict else 'FAILED'}.",
        "",
        "| scenario | mode | submitted | lost | duplicated | stuck | time to recover "
        "| final statuses | orphans | reproduce |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
    ]
    if fuzz_examples is not None:
        lines += [
            "## API fuzzing",
            "",
            f"`make chaos` also ran Schemathesis against the OpenAPI spec with "
            f"{fuzz_examples} examples per operation and variant, on SQLite and PostgreSQL "
            f"(`PODRELAY_FUZZ_EXAMPLES={fuzz_examples} .venv/bin/pytest "
            "tests/api/test_schema_fuzz.py`): no 5xx, every answer as documented.",
            "",
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("results", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("--fuzz-examples", type=int, default=None)
    args = parser.parse_args()
    results = json.loads(args.results.read_text())
    args.output.write_text(
        render(results, fuzz_examples=args.fuzz_examples, when=datetime.now(UTC))
    )
    print(f"wrote {args.output} ({len(results)} scenarios)")


if __name__ == "__main__":
    main()
