"""Submission throughput: POST /api/v1/runpod/generate on the real stack, against bare FastAPI.

    python -m bench.submit --quick             # one short round per side, about 30 s
    python -m bench.submit --json result.json  # 3 interleaved rounds of 15 s per side

Both servers run as `uvicorn <app> --workers 1` subprocesses on 127.0.0.1 with the same flags
(`UVICORN_FLAGS`), started by `app.devstack.start_process`, in the same run:

- Podrelay (`app.main:app`) with a real ledger, PostgreSQL (a database created for the run and
  dropped after; `--db sqlite` for a file) and a real broker, Redis db 11 (flushed before and
  after; `--broker embedded` for the file-system broker), which also holds the rate-limit
  counters. Callers present an API key (`--auth anonymous` for none); the rate limit is set out
  of reach (every request is still counted) and the per-key cap on unfinished jobs is off
  (`MAX_CONCURRENT_JOBS=0`). No worker runs: every job stays pending,
  so the ledger grows through the run (its size is printed).
- the baseline, `bench.bare_app`: the same route validating a small body and answering 202.

The load is `--concurrency` (64) keep-alive connections, each sending its next request as soon
as the last one is answered, spread over `--clients` processes (default 1). Only answers
completed inside the measured window (after `--warmup`) count: requests per second and latency
percentiles come from them. Rounds alternate bare and Podrelay so drift hits both alike.

The load generator. The machine has 2 cores shared by the load generator, the server, PostgreSQL
and Redis, so the client must be cheap or it, not the server, sets the bare row. One
httpx.AsyncClient with 64 connections spends ~7-20 ms of CPU per request in its connection pool
and caps the bare app near 70 req/s (a ratio that flatters Podrelay; `--client httpx` shows it).
The default `raw` client writes the request bytes itself on asyncio streams (uvloop) and parses
only the status line and Content-Length: one process drives the bare app at 1,400-2,700 req/s
using ~0.15-0.25 of a core, leaving the rest to the servers, so one load process is the default
(more processes only take CPU from the server on 2 cores).

Each row also gives the CPU the server process used (1.0 is one core), the CPU of the load
processes, and how busy the whole machine was: a bare server under one core while the machine is
fully busy means the machine (other processes too), not the server, bounded the row.
"""

import argparse
import asyncio
import json
import multiprocessing
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvloop
from sqlalchemy import func, select

from app.devstack import start_process, stop_process, wait_http
from bench.stack import child_env, database, free_port, machine_busy, machine_times, redis_db

PATH = "/api/v1/runpod/generate"
REDIS_DB = 11
UVICORN_FLAGS = ["--host", "127.0.0.1", "--workers", "1", "--no-access-log"]
UVICORN_FLAGS += ["--log-level", "warning"]
APPS = {"bare": "bench.bare_app:app", "podrelay": "app.main:app"}
QUICK = {"duration": 8.0, "warmup": 2.0, "rounds": 1}
FULL = {"duration": 15.0, "warmup": 3.0, "rounds": 3}
# A floor: submissions go through the one route with every middleware (no second path).
TARGET_RATIO = 0.35
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class LoadSpec:
    """What one load process does: `connections` loops from `start_at` (wall clock)."""

    client: str
    host: str
    port: int
    headers: dict[str, str]
    connections: int
    start_at: float
    warmup_s: float
    duration_s: float
    tag: str

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


@dataclass
class LoadResult:
    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    cpu_s: float = 0.0
    wall_s: float = 0.0


@dataclass
class Row:
    """One side in one round (or the median of the rounds)."""

    side: str
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    answered: int
    errors: dict[str, int]
    server_cpu: float  # cores the server process used in the window
    client_cpu: float  # cores the load processes used, on average over their run
    machine_busy: float  # share of all the machine's CPU time not idle in the window


def process_id(_: int) -> int:
    """Run once in each pool worker before measuring, so none is still starting then."""
    return os.getpid()


def run_load(spec: LoadSpec) -> LoadResult:
    """One load process (run in a pool worker), on uvloop like the servers."""
    return uvloop.run(_load(spec))


def _body(spec: LoadSpec, number: int, sent: int) -> bytes:
    return b'{"prompt": "bench %s %d %d", "width": 512, "height": 512}' % (
        spec.tag.encode(),
        number,
        sent,
    )


class _Window:
    """Keeps the answers completed inside the measured window, the same (wall clock) window in
    every load process and in the parent, which samples CPU over it."""

    def __init__(self, spec: LoadSpec, result: LoadResult) -> None:
        self.result = result
        wall_to_perf = time.perf_counter() - time.time()
        self.measure_from = spec.start_at + spec.warmup_s + wall_to_perf
        self.stop_at = self.measure_from + spec.duration_s

    def open(self) -> bool:
        return time.perf_counter() < self.stop_at

    def record(self, status: str, started: float) -> None:
        done = time.perf_counter()
        if self.measure_from <= done <= self.stop_at:
            self.result.statuses[status] += 1
            if status == "202":
                self.result.latencies_ms.append((done - started) * 1000)


async def _load(spec: LoadSpec) -> LoadResult:
    result = LoadResult()
    await asyncio.sleep(max(0.0, spec.start_at - time.time()))
    cpu_started, wall_started = time.process_time(), time.perf_counter()
    window = _Window(spec, result)
    if spec.client == "httpx":
        await _httpx_load(spec, window)
    else:
        await asyncio.gather(*(_raw_connection(spec, n, window) for n in range(spec.connections)))
    result.cpu_s = time.process_time() - cpu_started
    result.wall_s = time.perf_counter() - wall_started
    return result


async def _httpx_load(spec: LoadSpec, window: _Window) -> None:
    """`connections` loops sharing one httpx.AsyncClient (its pool holds that many)."""
    limits = httpx.Limits(
        max_connections=spec.connections, max_keepalive_connections=spec.connections
    )
    headers = {**spec.headers, "Content-Type": "application/json"}
    async with httpx.AsyncClient(
        base_url=spec.url, headers=headers, limits=limits, timeout=60.0
    ) as client:

        async def connection(number: int) -> None:
            sent = 0
            while window.open():
                sent += 1
                started = time.perf_counter()
                try:
                    response = await client.post(PATH, content=_body(spec, number, sent))
                    status = str(response.status_code)
                except httpx.HTTPError as error:
                    status = type(error).__name__
                window.record(status, started)

        await asyncio.gather(*(connection(number) for number in range(spec.connections)))


async def _raw_connection(spec: LoadSpec, number: int, window: _Window) -> None:
    """A keep-alive HTTP/1.1 connection on asyncio streams (reopened after an error): the
    request bytes are built by hand and only the status line and Content-Length are parsed."""
    head = "".join(
        [
            f"POST {PATH} HTTP/1.1\r\nHost: {spec.host}:{spec.port}\r\n",
            "Content-Type: application/json\r\n",
            *(f"{name}: {value}\r\n" for name, value in spec.headers.items()),
        ]
    ).encode()
    sent = 0
    while window.open():
        started = time.perf_counter()
        try:
            reader, writer = await asyncio.open_connection(spec.host, spec.port)
        except OSError as error:
            window.record(type(error).__name__, started)
            await asyncio.sleep(0.1)
            continue
        try:
            while window.open():
                sent += 1
                body = _body(spec, number, sent)
                started = time.perf_counter()
                writer.write(b"%sContent-Length: %d\r\n\r\n%s" % (head, len(body), body))
                answer = await reader.readuntil(b"\r\n\r\n")
                await reader.readexactly(_content_length(answer))
                window.record(answer[9:12].decode(), started)
                if b"connection: close" in answer.lower():
                    break
        except (OSError, asyncio.IncompleteReadError) as error:
            window.record(type(error).__name__, started)  # an error; then a new connection
        finally:
            writer.close()


def _content_length(head: bytes) -> int:
    for line in head.lower().split(b"\r\n"):
        if line.startswith(b"content-length:"):
            return int(line[15:])
    raise ValueError(f"an answer without Content-Length: {head!r}")


def _process_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS  # utime + stime


@dataclass
class Server:
    side: str
    port: int
    process: "subprocess.Popen[bytes]"


@contextmanager
def serve(side: str, env: dict[str, str], folder: Path) -> Iterator[Server]:
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", APPS[side], *UVICORN_FLAGS, "--port", str(port)]
    process = start_process(argv, env=env, log_path=folder / f"{side}.log")
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", timeout=60.0)
        yield Server(side, port, process)
    finally:
        stop_process(process)


def measure(
    server: Server, pool: ProcessPoolExecutor, args: argparse.Namespace, headers: dict[str, str]
) -> Row:
    clients = args.clients
    start_at = time.time() + 0.5  # every load process is up and waiting by then
    specs = [
        LoadSpec(
            client=args.client,
            host="127.0.0.1",
            port=server.port,
            headers=headers,
            connections=args.concurrency // clients + (index < args.concurrency % clients),
            start_at=start_at,
            warmup_s=args.warmup,
            duration_s=args.duration,
            tag=f"{server.side}-{index}",
        )
        for index in range(clients)
    ]
    futures = [pool.submit(run_load, spec) for spec in specs]
    time.sleep(max(0.0, start_at + args.warmup - time.time()))
    cpu_before, machine_before = _process_cpu_s(server.process.pid), machine_times()
    time.sleep(args.duration)
    cpu_after, machine_after = _process_cpu_s(server.process.pid), machine_times()
    results = [future.result() for future in futures]

    latencies = sorted(latency for result in results for latency in result.latencies_ms)
    statuses: Counter[str] = sum((result.statuses for result in results), Counter())
    return Row(
        side=server.side,
        requests_per_s=len(latencies) / args.duration,
        p50_ms=_percentile(latencies, 50),
        p99_ms=_percentile(latencies, 99),
        answered=len(latencies),
        errors={status: count for status, count in statuses.items() if status != "202"},
        server_cpu=(cpu_after - cpu_before) / args.duration,
        client_cpu=sum(result.cpu_s / result.wall_s for result in results if result.wall_s),
        machine_busy=machine_busy(machine_before, machine_after),
    )


def _percentile(sorted_values: list[float], percent: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, round(percent / 100 * (len(sorted_values) - 1)))
    return sorted_values[index]


def median_row(rows: list[Row]) -> Row:
    errors: Counter[str] = Counter()
    for row in rows:
        errors.update(row.errors)
    return Row(
        side=rows[0].side,
        requests_per_s=statistics.median(row.requests_per_s for row in rows),
        p50_ms=statistics.median(row.p50_ms for row in rows),
        p99_ms=statistics.median(row.p99_ms for row in rows),
        answered=sum(row.answered for row in rows),
        errors=dict(errors),
        server_cpu=statistics.median(row.server_cpu for row in rows),
        client_cpu=statistics.median(row.client_cpu for row in rows),
        machine_busy=statistics.median(row.machine_busy for row in rows),
    )


def prepare_ledger(database_url: str, auth: str) -> dict[str, str]:
    """Create the schema (and an API key); the headers every request carries."""
    from app.accounts.service import create_key
    from app.core.db import Database
    from app.core.migrate import upgrade_database

    db = Database(database_url)
    try:
        upgrade_database(db)
        if auth == "anonymous":
            return {}
        with db.session() as session:
            _, plaintext = create_key(session, name="bench")
        return {"Authorization": f"Bearer {plaintext}"}
    finally:
        db.dispose()


def count_jobs(database_url: str) -> int:
    from app.core.db import Database
    from app.jobs.models import Job

    db = Database(database_url)
    try:
        with db.session() as session:
            return int(session.scalar(select(func.count()).select_from(Job)) or 0)
    finally:
        db.dispose()


def podrelay_env(
    args: argparse.Namespace, folder: Path, db_url: str, redis_url: str
) -> dict[str, str]:
    return child_env(
        environment="production" if args.auth == "key" else "development",
        media_url_secret="mediasec_bench",  # production refuses the development default
        database_url=db_url,
        redis_url=redis_url,
        data_dir=str(folder / "data"),
        media_dir=str(folder / "media"),
        log_file=str(folder / "podrelay-app.log"),
        # This measures accepting jobs, not refusing them: the rate limit is out of reach (yet
        # counted) and the cap on unfinished jobs is off, as the ledger only grows here.
        requests_per_minute=str(10**9),
        creates_per_minute=str(10**9),
        max_concurrent_jobs="0",
    )


def run(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    redis_number = REDIS_DB if args.broker == "redis" else None
    with database(args.db, folder) as db_url, redis_db(redis_number) as redis_url:
        headers = prepare_ledger(db_url, args.auth)
        context = multiprocessing.get_context("spawn")
        with (
            ProcessPoolExecutor(max_workers=args.clients, mp_context=context) as pool,
            serve("bare", child_env(), folder) as bare,
            serve("podrelay", podrelay_env(args, folder, db_url, redis_url), folder) as podrelay,
        ):
            list(pool.map(process_id, range(args.clients)))
            rounds: list[dict[str, Row]] = []
            for number in range(1, args.rounds + 1):
                round_rows = {}
                for server in (bare, podrelay):
                    print(f"[submit] round {number}/{args.rounds}: {server.side} ...", flush=True)
                    round_rows[server.side] = measure(server, pool, args, headers)
                rounds.append(round_rows)
        jobs = count_jobs(db_url)
    rows = {side: median_row([r[side] for r in rounds]) for side in APPS}
    return {"rounds": rounds, "rows": rows, "jobs_in_ledger": jobs}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.submit",
        description="POST /generate on the real stack against a bare FastAPI endpoint.",
    )
    parser.add_argument("--concurrency", type=int, default=64, help="connections (default 64)")
    parser.add_argument("--clients", type=int, default=1, help="load processes (default 1)")
    parser.add_argument(
        "--client",
        choices=["raw", "httpx"],
        default="raw",
        help="load generator: hand-built HTTP/1.1 on asyncio streams (default) or httpx",
    )
    parser.add_argument("--duration", type=float, help="measured s per side and round")
    parser.add_argument("--warmup", type=float, help="unmeasured s before each window")
    parser.add_argument("--rounds", type=int, help="rounds of (bare, Podrelay); median reported")
    parser.add_argument("--quick", action="store_true", help="one short round (< 60 s in all)")
    parser.add_argument("--db", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--broker", choices=["redis", "embedded"], default="redis")
    parser.add_argument("--auth", choices=["key", "anonymous"], default="key")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs)")
    args = parser.parse_args(argv)
    for name, value in (QUICK if args.quick else FULL).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.concurrency < 1 or args.clients < 1 or args.clients > args.concurrency:
        parser.error("need 1 <= --clients <= --concurrency")
    if args.duration <= 0 or args.warmup < 0 or args.rounds < 1:
        parser.error("--duration and --rounds must be positive")
    return args


def print_table(result: dict[str, Any], args: argparse.Namespace, elapsed_s: float) -> None:
    rows: dict[str, Row] = result["rows"]
    print()
    print(
        f"POST {PATH}: {args.concurrency} connections from {args.clients} load process(es), "
        f"{args.rounds} round(s) of {args.duration:g} s, median; {args.db}, {args.broker} broker, "
        f"auth {args.auth}, {os.cpu_count()} CPUs ({elapsed_s:.0f} s in all)"
    )
    header = f"{'':10}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}"
    print(header + f"{'server CPU':>12}{'load CPU':>10}{'machine':>9}")
    for side, label in (("bare", "bare"), ("podrelay", "Podrelay")):
        row = rows[side]
        errors = sum(row.errors.values())
        print(
            f"{label:10}{row.requests_per_s:>8.0f}{row.p50_ms:>9.1f}{row.p99_ms:>9.1f}"
            f"{errors:>8}{row.server_cpu:>12.2f}{row.client_cpu:>10.2f}{row.machine_busy:>9.0%}"
        )
        if row.errors:
            print(f"{'':10}errors: {row.errors}")
    ratio = result["ratio"]
    verdict = "meets" if ratio >= TARGET_RATIO else "below"
    print(f"Podrelay/bare throughput: {ratio:.2f} ({verdict} the {TARGET_RATIO:.0%} target)")
    print(f"jobs in the ledger at the end: {result['jobs_in_ledger']:,} (all pending)")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    started = time.monotonic()
    folder = Path(tempfile.mkdtemp(prefix="podrelay-submit-"))
    try:
        result = run(args, folder)
    finally:
        if args.keep:
            print(f"[submit] logs kept in {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    rows: dict[str, Row] = result["rows"]
    result["ratio"] = rows["podrelay"].requests_per_s / rows["bare"].requests_per_s
    print_table(result, args, time.monotonic() - started)
    if args.json:
        config = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
        document = {
            "config": {**config, "cpus": os.cpu_count(), "uvicorn_flags": UVICORN_FLAGS},
            "rows": {side: asdict(row) for side, row in rows.items()},
            "rounds": [{side: asdict(row) for side, row in r.items()} for r in result["rounds"]],
            "ratio": result["ratio"],
            "jobs_in_ledger": result["jobs_in_ledger"],
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")


if __name__ == "__main__":
    main()
