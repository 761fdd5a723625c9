"""The benchmarks at a tiny scale, so they keep working, and docs/BENCHMARKS.md rendered from
what they wrote; `make bench` runs them in full."""

import importlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

# Each benchmark's arguments for a run of a few seconds (the module's --json is added).
LIGHT_STACK = " --db sqlite --broker embedded"
TINY = {
    "client_overhead": "--requests 60 --rounds 1".split(),
    "submit": ("--duration 1 --warmup 0.5 --rounds 1 --concurrency 8" + LIGHT_STACK).split(),
    "inflight": ("--jobs 20 --duration 1 --mode both --no-baseline" + LIGHT_STACK).split(),
    "dispatch": "--jobs 20".split(),
    "fairness": "--a-jobs 60".split(),
    "failover": "--duration 10 --rate 4".split(),
}
# The most the benchmarks above may take, all together (`run_modules` kills what is left).
RUNS_TIMEOUT_S = 300
# The first test waits for the module fixture, which runs every benchmark above.
pytestmark = pytest.mark.timeout(RUNS_TIMEOUT_S + 120)


def run_modules(
    modules: dict[str, list[str]], folder: Path
) -> dict[str, subprocess.CompletedProcess[str]]:
    """`python -m <module> <args>` for each, all at once; their output goes to files (a full
    pipe nobody reads would stall a benchmark)."""
    started = {}
    for module, args in modules.items():
        with (
            (folder / f"{module}.out").open("w") as out,
            (folder / f"{module}.err").open("w") as err,
        ):
            started[module] = subprocess.Popen(
                [sys.executable, "-m", module, *args],
                stdout=out,
                stderr=err,
                text=True,
                cwd=Path(__file__).parent.parent,
            )
    deadline = time.monotonic() + RUNS_TIMEOUT_S
    for process in started.values():
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return {
        module: subprocess.CompletedProcess(
            process.args,
            process.returncode,
            (folder / f"{module}.out").read_text(),
            (folder / f"{module}.err").read_text(),
        )
        for module, process in started.items()
    }


@dataclass
class Runs:
    folder: Path  # where each benchmark wrote <name>.json
    processes: dict[str, subprocess.CompletedProcess[str]]

    def document(self, name: str) -> dict[str, Any]:
        process = self.processes[name]
        assert process.returncode == 0, process.stdout[-2000:] + process.stderr[-2000:]
        document: dict[str, Any] = json.loads((self.folder / f"{name}.json").read_text())
        return document


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    """Every benchmark at once: each has its own ports, databases and Redis db, and at this
    scale spends most of its time waiting (a job's duration, an outage), not computing."""
    folder = tmp_path_factory.mktemp("bench")
    modules = {
        f"bench.{name}": [*args, "--json", str(folder / f"{name}.json")]
        for name, args in TINY.items()
    }
    completed = run_modules(modules, folder)
    return Runs(folder, {name: completed[f"bench.{name}"] for name in TINY})


def test_inflight_benchmark_small_scale(runs: Runs) -> None:
    results = runs.document("inflight")["results"]
    for mode in ("webhook", "polling"):
        assert results[mode]["lost"] == 0
        assert results[mode]["duplicates"] == 0
        assert results[mode]["completed"] == 20
    assert results["webhook"]["calls_per_job"] <= 2


def test_dispatch_and_fairness_benchmarks_small_scale(runs: Runs) -> None:
    dispatch = runs.document("dispatch")
    assert all(run["lost"] == 0 and run["duplicates"] == 0 for run in dispatch["runs"].values())
    assert [run["workers"] for run in dispatch["runs"].values()] == [1, 1, 2]
    assert all(0 < run["machine_busy"] <= 1 for run in dispatch["runs"].values())
    fair, fifo = runs.document("fairness")["results"]
    assert (fair["order"], fifo["order"]) == ("fair", "fifo")
    assert fair["b_done"] == fifo["b_done"] == 20


def test_failover_benchmark_small_scale(runs: Runs) -> None:
    document = runs.document("failover")
    result = document["result"]
    assert result["jobs"] == result["completed"] == 40
    assert (result["lost"], result["duplicates"]) == (0, 0)
    assert result["moved"] > 0, "no job waited at the throttled endpoint"
    assert result["failover_s"] is not None
    assert 0 < result["first_move_s"] <= result["failover_s"]
    assert result["moved_e2e_s"]["p50"] > 0
    assert result["baseline_e2e_s"]["p50"] > 0
    assert document["targets"]["every job completed, 0 lost, 0 duplicates"]


def test_client_overhead_benchmark_small_scale(runs: Runs) -> None:
    document = runs.document("client_overhead")
    assert "client/bare throughput ratio:" in runs.processes["client_overhead"].stdout
    rows = document["rows"]
    assert document["ratio"] == rows["client"]["requests_per_s"] / rows["bare"]["requests_per_s"]
    assert document["config"] == {
        "requests": 60,
        "concurrency": 32,
        "rounds": 1,
        "cpus": os.cpu_count(),
    }


def test_submit_benchmark_small_scale(runs: Runs) -> None:
    document = runs.document("submit")
    rows = document["rows"]
    for side in ("bare", "podrelay"):
        assert rows[side]["answered"] > 0
        assert rows[side]["errors"] == {}
    assert document["ratio"] == rows["podrelay"]["requests_per_s"] / rows["bare"]["requests_per_s"]
    assert document["jobs_in_ledger"] >= rows["podrelay"]["answered"]


def summary_rows(text: str) -> dict[str, list[str]]:
    """The summary table's rows by benchmark name (the bold part of the first cell)."""
    rows = [line.strip("| ").split(" | ") for line in text.splitlines() if line.startswith("| **")]
    return {row[0].split("**")[1]: row for row in rows}


def render(folder: Path, output: Path) -> tuple[str, str]:
    result = subprocess.run(
        [sys.executable, "-m", "bench.report", str(folder), str(output)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return output.read_text(), result.stdout


def test_report_has_a_row_per_benchmark_with_its_command(runs: Runs, tmp_path: Path) -> None:
    text, _ = render(runs.folder, tmp_path / "BENCHMARKS.md")
    rows = summary_rows(text)
    names = {"RunPod client overhead", "Submission throughput", "Dispatch rate", "Fairness"}
    names |= {"Failover"}
    names |= {"In-flight jobs, webhook", "In-flight jobs, polling"}
    assert rows.keys() == names
    benches = {
        "RunPod client overhead": ("client_overhead", {}),
        "Submission throughput": ("submit", {}),
        "In-flight jobs, webhook": ("inflight", {"mode": "webhook"}),
        "In-flight jobs, polling": ("inflight", {"mode": "polling"}),
        "Dispatch rate": ("dispatch", {}),
        "Fairness": ("fairness", {}),
        "Failover": ("failover", {}),
    }
    for name, (bench, overrides) in benches.items():
        row = rows[name]
        assert len(row) == 7, row
        assert "quick scale" in row[0]
        assert "not run" not in row
        # The command parses back to what the run recorded (the row's mode for in-flight).
        program, _, module, *argv = shlex.split(row[6].strip("`"))
        assert (program, module) == (".venv/bin/python", f"bench.{bench}")
        parsed = vars(importlib.import_module(module).parse_args(argv))
        recorded = {**runs.document(bench)["config"], **overrides}
        for key in parsed.keys() - {"json", "keep"}:
            assert parsed[key] == recorded[key], (name, key)
    submit = runs.document("submit")
    assert rows["Submission throughput"][5].startswith("yes" if submit["ratio"] >= 0.35 else "**no")
    targets = runs.document("inflight")["results"]["webhook"]["targets"]
    assert rows["In-flight jobs, webhook"][5].startswith("yes" if all(targets.values()) else "**no")
    assert rows["RunPod client overhead"][5] == "no target"

    cpu = next(
        line for line in Path("/proc/cpuinfo").read_text().splitlines() if "model name" in line
    )
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    assert f"{os.cpu_count()} cores ({cpu.split(':', 1)[1].strip()}), {memory:.0f} GB RAM" in text
    assert f"on {datetime.now(UTC):%Y-%m-%d}" in text
    assert "`make bench`" in text
    assert "same run" in text
    assert "| lag to ledger p50/p99/max s |" in text.partition("## In-flight jobs")[2]
    assert "machine busy" in rows["Dispatch rate"][2]


def test_report_shows_what_did_not_run(runs: Runs, tmp_path: Path) -> None:
    shutil.copy(runs.folder / "submit.json", tmp_path)
    document = runs.document("inflight")
    del document["results"]["polling"]  # a `--mode webhook` run
    (tmp_path / "inflight.json").write_text(json.dumps(document))
    text, stdout = render(tmp_path, tmp_path / "out" / "BENCHMARKS.md")
    rows = summary_rows(text)
    assert len(rows) == 7
    for name in ("RunPod client overhead", "In-flight jobs, polling"):
        assert rows[name][2] == rows[name][5] == "not run"
    assert rows["RunPod client overhead"][3] == "not run"
    for name in ("Submission throughput", "In-flight jobs, webhook"):
        assert "not run" not in rows[name][2]
        assert rows[name][5] != "not run"
    assert "not run: no `" in text  # the client overhead section says which file is missing
    assert stdout.strip().endswith("(not run: client_overhead, dispatch, fairness, failover)")
