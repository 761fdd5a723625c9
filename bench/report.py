"""Write docs/BENCHMARKS.md from the JSON files the benchmarks wrote (`make bench` runs this).

    python -m bench.report data/bench docs/BENCHMARKS.md

DIR holds client_overhead.json, submit.json and inflight.json (each benchmark's `--json`); a
missing one shows as "not run". Each row's command is rebuilt from the configuration its JSON
recorded, so it reproduces that row at the scale it was measured.
"""

import argparse
import json
import os
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import (
    client_overhead,
    dispatch,
    failover,
    fairness,
    inflight,
    inflight_report,
    submit,
)
from bench.inflight_report import (
    MAX_CALLS_PER_JOB,
    MAX_LAG_P99_S,
    MAX_WORKER_RSS_MB,
    Result,
    _rows,
)
from bench.machine import machine
from bench.report_config import (
    BENCHES,
    CLIENT_OVERHEAD,
    DISPATCH,
    FAILOVER,
    FAIRNESS,
    INFLIGHT,
    NOT_FLAGS,
    PYTHON,
    SUBMIT,
    Bench,
    Doc,
    shown,
)

NOT_RUN = "not run"


def _name(title: str, bench: Bench, doc: Doc | None) -> str:
    scale = bench.reduced(doc["config"]) if doc else None
    return f"**{title}**" + (f"<br>*{scale}*" if scale else "")


def _met(met: bool | None, doc: Doc | None, bench: Bench) -> str:
    if doc is None:
        return NOT_RUN
    if met is None:
        return "no target"
    scale = " (quick scale)" if bench.reduced(doc["config"]) else ""
    return ("yes" if met else "**no**") + scale


def _row(
    title: str, bench: Bench, doc: Doc | None, cells: list[str], met: bool | None, **flags: Any
) -> list[str]:
    """A summary row: name, `cells` (measures, Podrelay, baseline, ratio or target), verdict,
    and the command that reproduces it."""
    command = bench.command(doc["config"] if doc else {}, **flags)
    return [_name(title, bench, doc), *cells, _met(met, doc, bench), f"`{command}`"]


def _rate(row: Doc) -> str:
    return f"{row['requests_per_s']:,.0f} req/s, p99 {row['p99_ms']:.1f} ms"


def client_overhead_rows(doc: Doc | None) -> list[list[str]]:
    concurrency = (doc["config"] if doc else client_overhead.FULL)["concurrency"]
    what = f"GET /status via `RunPodClient` vs bare httpx, one simulator, concurrency {concurrency}"
    cells = [what, NOT_RUN, NOT_RUN, NOT_RUN]
    if doc:
        rows = doc["rows"]
        cells[1:] = [_rate(rows["client"]), _rate(rows["bare"]), f"ratio {doc['ratio']:.2f}"]
    return [_row("RunPod client overhead", CLIENT_OVERHEAD, doc, cells, None)]


def submit_rows(doc: Doc | None) -> list[list[str]]:
    what = "POST /api/v1/runpod/generate on the real stack vs a bare FastAPI route"
    target = f"target >= {submit.TARGET_RATIO:g}"
    cells, met = [what, NOT_RUN, NOT_RUN, target], None
    if doc:
        rows = doc["rows"]
        cells[1:] = [_rate(rows["podrelay"]), _rate(rows["bare"]), f"ratio {doc['ratio']:.2f}; "]
        cells[3] += target
        met = doc["ratio"] >= submit.TARGET_RATIO
    return [_row("Submission throughput", SUBMIT, doc, cells, met)]


def _results(doc: Doc | None) -> dict[str, Result]:
    names = {field.name for field in fields(Result)}
    return {
        label: Result(**{key: value for key, value in data.items() if key in names})
        for label, data in (doc["results"] if doc else {}).items()
    }


def _inflight_figure(result: Result) -> str:
    parts = [f"lost {result.lost}", f"duplicates {result.duplicates}"]
    if result.lag_s:
        parts.append(f"lag p99 {result.lag_s['p99']:.3f} s")
    if result.status_limit is not None:
        parts.append(f"max /status {result.status_max_10s} per 10 s")
    parts += [
        f"{result.calls_per_job:.2f} calls/job",
        f"RSS {result.peak_rss_mb:.0f} MB",
        f"CPU {result.cpu_ms_per_job:.1f} ms/job",
    ]
    return ", ".join(parts)


def _baseline_figure(result: Result | None) -> str:
    if result is None:
        return "seed baseline not run"
    return (
        f"seed design: {result.completed:,} of {result.jobs:,} done in {result.wall_s:.0f} s, "
        f"{result.calls_per_job:.2f} calls/job, RSS {result.peak_rss_mb:.0f} MB, "
        f"CPU {result.cpu_ms_per_job:.1f} ms/job"
    )


def inflight_rows(doc: Doc | None) -> list[list[str]]:
    config, results = doc["config"] if doc else inflight.FULL, _results(doc)
    baseline = _baseline_figure(results.get("seed baseline")) if doc else NOT_RUN
    webhook = (
        f"at {inflight.FULL['jobs']:,} jobs: 0 lost, 0 duplicates, lag p99 <= {MAX_LAG_P99_S} s, "
        f"<= {MAX_CALLS_PER_JOB:g} calls/job, worker RSS <= {MAX_WORKER_RSS_MB:g} MB"
    )
    rows = []
    for mode, target in (("webhook", webhook), ("polling", "0 lost, max /status per 10 s <= ")):
        what = f"{config['jobs']:,} jobs of {config['duration']:g} s in flight, one worker, "
        cells = [f"{what}{mode} mode, against the seed design", NOT_RUN, baseline, target]
        met, ran = None, doc if mode in results else None
        if ran:
            result = results[mode]
            missed = [name for name, ok in ran["results"][mode]["targets"].items() if not ok]
            met = not missed
            cells[1] = _inflight_figure(result)
            cells[3] += f"{result.status_limit:,}" if result.status_limit is not None else ""
            cells[3] += f" (missed: {'; '.join(missed)})" if missed else ""
        elif mode == "polling":
            cells[3] += "the configured limit"
        rows.append(_row(f"In-flight jobs, {mode}", INFLIGHT, ran, cells, met, mode=mode))
    return rows


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _measured(path: Path, doc: Doc | None, bench: Bench) -> list[str]:
    if doc is None:
        return [f"{NOT_RUN}: no `{path}`. Run `{bench.command({})}`.", ""]
    when = datetime.fromtimestamp(path.stat().st_mtime, UTC)
    config = ", ".join(
        f"{key} {shown(value)}"
        for key, value in doc["config"].items()
        if key not in {*NOT_FLAGS, "quick"}
    )
    scale = bench.reduced(doc["config"])
    return [f"Measured {when:%Y-%m-%d %H:%M} UTC{f' at {scale}' if scale else ''}; {config}.", ""]


def client_overhead_detail(doc: Doc) -> list[str]:
    sides = (("bare httpx", doc["rows"]["bare"]), ("RunPodClient", doc["rows"]["client"]))
    rows = [
        [label, f"{row['requests_per_s']:,.0f}", f"{row['p99_ms']:.1f}"] for label, row in sides
    ]
    return [*_table(["", "req/s", "p99 ms"], rows), "", f"Ratio: {doc['ratio']:.2f}.", ""]


def submit_detail(doc: Doc) -> list[str]:
    rows = [
        [
            label,
            f"{row['requests_per_s']:,.0f}",
            f"{row['p50_ms']:.1f}",
            f"{row['p99_ms']:.1f}",
            f"{sum(row['errors'].values()):,}",
            f"{row['server_cpu']:.2f}",
            f"{row['client_cpu']:.2f}",
            f"{row['machine_busy']:.0%}",
        ]
        for label, row in (("bare", doc["rows"]["bare"]), ("Podrelay", doc["rows"]["podrelay"]))
    ]
    header = ["", "req/s", "p50 ms", "p99 ms", "errors", "server CPU", "load CPU", "machine busy"]
    return [
        *_table(header, rows),
        "",
        f"Podrelay/bare throughput: {doc['ratio']:.2f} (target >= {submit.TARGET_RATIO:g}). "
        f"Jobs in the ledger at the end: {doc['jobs_in_ledger']:,}. Server CPU 1.0 is one core.",
        "",
    ]


def inflight_detail(doc: Doc) -> list[str]:
    results = list(_results(doc).values())
    if not results:
        return ["No results in the JSON.", ""]
    cells = [_rows(result) for result in results]
    rows = [[name, *(row[name] for row in cells)] for name in cells[0]]
    return [*_table(["", *(result.label for result in results)], rows), ""]


def dispatch_rows(doc: Doc | None) -> list[list[str]]:
    what = "jobs RunPod accepts per second from one worker's dispatcher, and from two"
    target = (
        f">= {inflight_report.MIN_DISPATCH_SHARE:.0%} of the allowance; two workers "
        f">= {dispatch.MIN_SCALING:g}x one"
    )
    cells, met = [what, NOT_RUN, NOT_RUN, target], None
    if doc:
        runs = doc["runs"]
        one, raised_one, raised_two = runs.values()
        cells[1] = (
            f"one worker {one['accepted_per_s']:.1f}/s ({doc['share']:.0%} of "
            f"{one['allowance_per_s']:g}/s), CPU {one['cpu_ms_per_job']:.1f} ms/job; two workers "
            f"{raised_two['accepted_per_s']:.1f}/s against {raised_one['accepted_per_s']:.1f}/s "
            f"for one ({doc['scaling']:.2f}x) with {raised_one['allowance_per_s']:g}/s allowed"
            f"{_machine(raised_one, raised_two)}"
        )
        cells[2] = f"RunPod's /run allowance, {one['allowance_per_s']:g}/s"
        met = all(doc["targets"].values())
    return [_row("Dispatch rate", DISPATCH, doc, cells, met)]


def _machine(one: Doc, two: Doc) -> str:
    """How busy the whole machine was in the two runs that compare one worker with two."""
    return f"; machine busy {one['machine_busy']:.0%} with one, {two['machine_busy']:.0%} with two"


def fairness_rows(doc: Doc | None) -> list[list[str]]:
    what = "key B's 20 jobs, submitted 2 s into key A's burst: wait until RunPod accepts each"
    target = f"B's p99 <= {fairness.TARGET_P99_S:g} s"
    cells, met = [what, NOT_RUN, NOT_RUN, target], None
    if doc:
        fair, fifo = doc["results"]
        cells[0] = what.replace("A's burst", f"A's burst of {fair['a_jobs']:,}")
        cells[1] = f"fair order: {_wait(fair)}"
        cells[2] = f"first come, first served: {_wait(fifo)}"
        met = doc["met"]
    return [_row("Fairness", FAIRNESS, doc, cells, met)]


def _wait(result: Doc) -> str:
    wait = result["b_wait_s"]
    if not wait:
        return "no job accepted in time"
    return f"p50 {wait['p50']:.2f} s, p99 {wait['p99']:.2f} s ({result['b_done']} of 20 sent)"


def failover_rows(doc: Doc | None) -> list[list[str]]:
    what = (
        "a route of two endpoints under steady submissions, one loses its GPUs: time until the "
        "other accepts the first job the lost one held; end-to-end time of the jobs that moved"
    )
    target = (
        f"failover <= {failover.TARGET_FAILOVER_S:g} s (two health-check intervals); "
        "every job completed, 0 duplicates"
    )
    cells, met = [what, NOT_RUN, NOT_RUN, target], None
    if doc:
        result = doc["result"]
        seconds = "never" if result["failover_s"] is None else f"{result['failover_s']:.1f} s"
        cells[1] = (
            f"failover {seconds}; {result['moved']} of {result['jobs']} jobs moved: "
            f"{_e2e(result['moved_e2e_s'])}; lost {result['lost']}, "
            f"duplicates {result['duplicates']}"
        )
        cells[2] = f"jobs that did not move: {_e2e(result['baseline_e2e_s'])}"
        moved, baseline = result["moved_e2e_s"], result["baseline_e2e_s"]
        if moved and baseline:
            cells[3] = f"moved p50 +{moved['p50'] - baseline['p50']:.1f} s; " + target
        met = all(doc["targets"].values())
    return [_row("Failover", FAILOVER, doc, cells, met)]


def _e2e(percentile: Doc) -> str:
    if not percentile:
        return "none"
    return f"end-to-end p50 {percentile['p50']:.1f} s, p99 {percentile['p99']:.1f} s"


SECTIONS = (
    (CLIENT_OVERHEAD, "RunPod client overhead", client_overhead_rows, client_overhead_detail),
    (SUBMIT, "Submission throughput", submit_rows, submit_detail),
    (INFLIGHT, "In-flight jobs", inflight_rows, inflight_detail),
    (DISPATCH, "Dispatch rate", dispatch_rows, None),
    (FAIRNESS, "Fairness", fairness_rows, None),
    (FAILOVER, "Failover", failover_rows, None),
)


def load(folder: Path) -> dict[str, Doc | None]:
    docs: dict[str, Doc | None] = {}
    for bench in BENCHES:
        path = folder / f"{bench.name}.json"
        docs[bench.name] = json.loads(path.read_text()) if path.exists() else None
    return docs


def render(folder: Path, output: Path, *, when: datetime) -> str:
    docs = load(folder)
    summary = [row for bench, _, rows, _ in SECTIONS for row in rows(docs[bench.name])]
    quick = any(bench.reduced(doc["config"]) for bench in BENCHES if (doc := docs[bench.name]))
    lines = [
        "# Benchmarks",
        "",
        "What Podrelay costs and holds, each against a baseline: the RunPod client against bare "
        "httpx, job submission against a bare FastAPI route, and the job engine with many jobs in "
        "flight against the seed's design (one blocking Celery task per job).",
        "",
        f"Written on {when:%Y-%m-%d %H:%M} UTC by `{PYTHON} -m bench.report {folder} {output}` "
        f"(`make bench` ends with it). Machine: {machine()}; load average "
        f"{os.getloadavg()[0]:.1f} when written, the machine being shared with other work.",
        "",
        "Absolute rates on a shared machine say little; every figure comes with a baseline "
        "measured in the same run, on the same machine, minutes apart, and the verdict is the "
        "ratio to it or the issue's target. Reproduce everything with `make bench` (about twenty "
        "minutes; `make bench-quick` runs the same at small scale), one row with its command.",
        "",
    ]
    if quick:
        lines += [
            "Rows marked *quick scale* were measured smaller than `make bench` measures: one short "
            "round is noisy, and the targets are stated for the full scale. `make bench` replaces "
            "them.",
            "",
        ]
    header = ["benchmark", "measures", "Podrelay", "baseline", "ratio or target", "target met"]
    lines += [*_table([*header, "reproduce"], summary), ""]
    for bench, title, _, detail in SECTIONS:
        doc = docs[bench.name]
        lines += [f"## {title}", "", *_measured(folder / f"{bench.name}.json", doc, bench)]
        lines += detail(doc) if doc and detail else []
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__)
    parser.add_argument("folder", type=Path, help="where the benchmarks wrote their JSON")
    parser.add_argument("output", type=Path, help="the Markdown file to write")
    args = parser.parse_args(argv)
    text = render(args.folder, args.output, when=datetime.now(UTC))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    missing = [bench.name for bench in BENCHES if not (args.folder / f"{bench.name}.json").exists()]
    print(f"wrote {args.output}" + (f" ({NOT_RUN}: {', '.join(missing)})" if missing else ""))


if __name__ == "__main__":
    main()
