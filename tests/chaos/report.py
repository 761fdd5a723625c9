"""Write docs/RELIABILITY.md from the chaos suite's results (`make chaos` runs this).

python -m tests.chaos.report data/chaos/results.json docs/RELIABILITY.md --fuzz-examples 300

`--merge` keeps the rows (and the fuzzing section) of the scenarios the results do not cover
from the existing file, replaces or adds the others, and says which rows were merged when:
for a scenario run alone at full scale, e.g.

PODRELAY_CHAOS_JOBS=500 PODRELAY_CHAOS_RESULTS=data/chaos/one.json .venv/bin/pytest -s \
    'tests/chaos/test_chaos.py::test_scenario_loses_duplicates_and_strands_nothing[NAME]'
python -m tests.chaos.report data/chaos/one.json docs/RELIABILITY.md --merge
"""

import argparse
import json
import re
from dataclasses import dataclass
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
        f"**{name}**<br>{result['fault']}"
        + (f"<br>Measured: {result['notes']}." if result.get("notes") else ""),
        result["mode"],
        f"{result['submitted']} / {result['jobs']}",
        str(result["lost"]),
        str(result["duplicated"]),
        str(result["stuck"]),
        _recovery(result["recovery_s"]),
        _counts(result["statuses"])
        + (f"; moved between endpoints {result['moves']}" if result.get("moves") else ""),
        _counts(result["orphans"]),
        f"`PODRELAY_CHAOS_JOBS={result['jobs']} .venv/bin/pytest '{NODE}[{name}]'`",
    ]
    return "| " + " | ".join(cells) + " |"


@dataclass(frozen=True)
class Earlier:
    """What `--merge` keeps of the file it updates."""

    written: str  # its "Written by ..." paragraph
    rows: dict[str, str]  # scenario -> its table row
    fuzzing: list[str]  # its API fuzzing section, if any


_ROW = re.compile(r"^\| \*\*(?P<name>[^*]+)\*\*")


def earlier(text: str) -> Earlier:
    lines = text.splitlines()
    written = next(line for line in lines if line.startswith("Written by "))
    rows = {m["name"]: line for line in lines if (m := _ROW.match(line))}
    start = next((i for i, line in enumerate(lines) if line == "## API fuzzing"), len(lines))
    return Earlier(written, rows, lines[start:])


def _clean(row: str) -> bool:
    lost, duplicated, stuck = (cell.strip() for cell in row.split(" | ")[3:6])
    return lost == duplicated == stuck == "0"


def render(
    results: dict[str, Any],
    *,
    fuzz_examples: int | None,
    when: datetime,
    merge: Earlier | None = None,
) -> str:
    rows = dict(merge.rows) if merge else {}
    rows.update({name: _row(result) for name, result in results.items()})
    verdict = all(_clean(row) for row in rows.values())
    written = (
        f"Written by `{COMMAND}` on {when:%Y-%m-%d %H:%M} UTC, on {machine()}, "
        "shared with other work at the time. Reproduce everything with `make chaos`, "
        "one scenario with the command in its row."
    )
    if merge is not None:
        names = ", ".join(f"**{name}**" for name in results)
        written = (
            f"{merge.written} The rows of {names} were run alone, at the scale in their row, "
            f"and merged in (`python -m tests.chaos.report --merge`) on {when:%Y-%m-%d %H:%M} "
            f"UTC, on {machine()}."
        )
    lines = [
        "# Reliability",
        "",
        written,
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
        "or two ledger jobs for one request. A job RunPod held in the queue of an endpoint "
        "out of rotation, cancelled there (RunPod confirmed `CANCELLED`) and run at another "
        "endpoint is moved, not duplicated (final statuses count the moves); moved without "
        "that confirmation counts as duplicated;",
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
        *rows.values(),
        "",
    ]
    if fuzz_examples is None and merge is not None and merge.fuzzing:
        lines += [*merge.fuzzing, ""] if merge.fuzzing[-1] else merge.fuzzing
    elif fuzz_examples is not None:
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
    parser.add_argument(
        "--merge", action="store_true", help="keep the other scenarios' rows of OUTPUT"
    )
    args = parser.parse_args()
    results = json.loads(args.results.read_text())
    merge = earlier(args.output.read_text()) if args.merge else None
    text = render(results, fuzz_examples=args.fuzz_examples, when=datetime.now(UTC), merge=merge)
    args.output.write_text(text)
    print(f"wrote {args.output} ({len(results)} scenarios)")


if __name__ == "__main__":
    main()
