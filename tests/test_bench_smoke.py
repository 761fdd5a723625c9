"""The benchmarks at a tiny scale, so they keep working; `make bench` runs them in full."""

import json
import subprocess
import sys
from pathlib import Path


def run_module(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=Path(__file__).parent.parent,
    )


def test_inflight_benchmark_small_scale(tmp_path: Path) -> None:
    output = tmp_path / "inflight.json"
    result = run_module(
        "bench.inflight",
        "--jobs",
        "20",
        "--duration",
        "1",
        "--mode",
        "both",
        "--no-baseline",
        "--db",
        "sqlite",
        "--broker",
        "embedded",
        "--json",
        str(output),
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    results = json.loads(output.read_text())["results"]
    for mode in ("webhook", "polling"):
        assert results[mode]["lost"] == 0
        assert results[mode]["duplicates"] == 0
        assert results[mode]["completed"] == 20
    assert results["webhook"]["calls_per_job"] <= 2


def test_client_overhead_benchmark_small_scale() -> None:
    result = run_module("bench.client_overhead", "--requests", "60", "--rounds", "1")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "client/bare throughput ratio:" in result.stdout
