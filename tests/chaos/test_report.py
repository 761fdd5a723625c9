"""docs/RELIABILITY.md as `make chaos` writes it from the scenarios' results."""

import json
import subprocess
import sys
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from tests.chaos.outcome import Outcome
from tests.chaos.report import render

WHEN = datetime(2026, 11, 27, 4, 30, tzinfo=UTC)


def outcome(scenario: str, **changes: object) -> Outcome:
    values: dict[str, object] = {
        "scenario": scenario,
        "fault": f"what {scenario} does",
        "mode": "polling",
        "jobs": 500,
        "submitted": 500,
        "refused": 0,
        "lost": 0,
        "duplicated": 0,
        "stuck": 0,
        "recovery_s": 12.5,
        "statuses": {"completed": 480, "failed": 20},
        "orphans": {"orphans": 2, "cancelled": 2},
        "api_retries": 3,
        "runpod_jobs": 502,
        **changes,
    }
    return Outcome(**values)  # type: ignore[arg-type]


def test_one_row_per_scenario_with_machine_date_and_command() -> None:
    results = {name: asdict(outcome(name)) for name in ("worker-kill-9", "redis-restart")}
    text = render(results, fuzz_examples=300, when=WHEN)
    rows = [line for line in text.splitlines() if line.startswith("| **")]
    assert len(rows) == 2
    assert (
        "| **worker-kill-9**<br>what worker-kill-9 does | polling | 500 / 500 | 0 | 0 | 0 |"
        in (rows[0])
    )
    assert "12.5 s | completed 480, failed 20 | cancelled 2, orphans 2 |" in rows[0]
    node = "tests/chaos/test_chaos.py::test_scenario_loses_duplicates_and_strands_nothing"
    assert f"`PODRELAY_CHAOS_JOBS=500 .venv/bin/pytest '{node}[redis-restart]'`" in rows[1]
    assert "2026-11-27 04:30 UTC" in text
    assert " cores (" in text
    assert "GB RAM" in text
    assert "Verdict: every scenario 0 lost, 0 duplicated, 0 stuck." in text
    assert "300 examples per operation" in text


def test_a_failed_scenario_shows_in_the_verdict_and_its_row() -> None:
    results = {"redis-restart": asdict(outcome("redis-restart", stuck=3, recovery_s=None))}
    text = render(results, fuzz_examples=None, when=WHEN)
    assert "Verdict: FAILED." in text
    assert "| 0 | 0 | 3 | never |" in text
    assert "API fuzzing" not in text


def test_the_command_line_writes_the_file(tmp_path: Path) -> None:
    source = tmp_path / "results.json"
    source.write_text(json.dumps({"lost-runpod-webhooks": asdict(outcome("lost-runpod-webhooks"))}))
    target = tmp_path / "RELIABILITY.md"
    subprocess.run(
        [sys.executable, "-m", "tests.chaos.report", str(source), str(target)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    assert "| **lost-runpod-webhooks**" in target.read_text()


def test_merge_keeps_the_other_scenarios_rows_and_says_what_it_added(tmp_path: Path) -> None:
    full = {name: asdict(outcome(name)) for name in ("worker-kill-9", "redis-restart")}
    target = tmp_path / "RELIABILITY.md"
    target.write_text(render(full, fuzz_examples=300, when=WHEN))
    source = tmp_path / "one.json"
    source.write_text(json.dumps({"object-store-outage": asdict(outcome("object-store-outage"))}))
    command = [sys.executable, "-m", "tests.chaos.report", str(source), str(target), "--merge"]
    subprocess.run(command, check=True, capture_output=True, timeout=60)
    text = target.read_text()
    rows = [line.split("**")[1] for line in text.splitlines() if line.startswith("| **")]
    assert rows == ["worker-kill-9", "redis-restart", "object-store-outage"]
    assert "Written by `make chaos` on 2026-11-27 04:30 UTC" in text
    assert "The rows of **object-store-outage** were run alone" in text
    assert "Verdict: every scenario 0 lost, 0 duplicated, 0 stuck." in text
    assert "300 examples per operation" in text

    source.write_text(json.dumps({"redis-restart": asdict(outcome("redis-restart", lost=1))}))
    subprocess.run(command, check=True, capture_output=True, timeout=60)
    text = target.read_text()
    assert "Verdict: FAILED." in text
    assert len([line for line in text.splitlines() if "| **redis-restart**" in line]) == 1


def test_moves_show_in_the_final_statuses_and_keep_the_row_clean() -> None:
    moved = asdict(outcome("endpoint-outage", statuses={"completed": 500}, orphans={}, moves=37))
    earlier = asdict(outcome("redis-restart"))
    del earlier["moves"]  # a results file written before moves were counted
    text = render(
        {"endpoint-outage": moved, "redis-restart": earlier}, fuzz_examples=None, when=WHEN
    )
    rows = {line.split("**")[1]: line for line in text.splitlines() if line.startswith("| **")}
    assert "| completed 500; moved between endpoints 37 | none |" in rows["endpoint-outage"]
    assert "moved between endpoints" not in rows["redis-restart"]
    assert "Verdict: every scenario 0 lost, 0 duplicated, 0 stuck." in text
    assert "is moved, not duplicated" in text
