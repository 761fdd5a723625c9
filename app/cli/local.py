"""Commands that run Podrelay's processes on this machine: dev, simulator, worker, bench."""

import subprocess
import sys
from enum import StrEnum
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import typer
from sqlalchemy.engine import make_url

from app.cli.errors import BadValue, CliError
from app.core.config import Settings, settings_or_exit
from app.core.supervisor import RestartPolicy, supervise
from app.devstack import API_HOST, API_PORT, run_stack, stack_services, worker_argv

REPO_ROOT = Path(__file__).resolve().parents[2]


def dev(
    host: Annotated[str, typer.Option(help="Address the API binds.")] = API_HOST,
    port: Annotated[int, typer.Option(help="Port of the API.", min=1, max=65535)] = API_PORT,
) -> None:
    """Start the local stack: simulator (without RunPod settings), worker with beat, and API.

    Applies the database migrations first. Ctrl-C stops every process. The simulator listens on
    SIMULATOR_HOST:SIMULATOR_PORT; RUNPOD_*, REDIS_URL and DATABASE_URL are used when set.
    """
    from app.core.db import Database
    from app.core.migrate import upgrade_database

    settings = settings_or_exit()
    database = Database(settings.database_url)
    upgrade_database(database)  # once here, before the API and the worker race to do it
    database.dispose()
    api_url = f"http://{host}:{port}"
    for label, value in _banner(settings, api_url):
        typer.echo(f"{label:<18}{value}")
    typer.echo("Ctrl-C stops everything.\n")
    raise typer.Exit(run_stack(stack_services(settings, host=host, port=port), api_url=api_url))


def _banner(settings: Settings, api_url: str) -> list[tuple[str, str]]:
    target = settings.runpod_target
    runpod = f"{target.base_url}/{target.endpoint_id}"
    if settings.routes_file is not None:
        routes = settings.catalogue.routes
        runpod = f"{len(routes)} routes from {settings.routes_file}: {', '.join(routes)}"
    return [
        ("Playground", f"{api_url}/"),
        ("Podrelay API", f"{api_url}/api/v1/runpod  (docs: {api_url}/docs)"),
        ("RunPod target", f"{runpod}{'  (built-in simulator)' if target.is_simulator else ''}"),
        ("Broker", "Redis (REDIS_URL)" if settings.redis_url else "embedded, under DATA_DIR"),
        ("Ledger", make_url(settings.database_url).render_as_string(hide_password=True)),
    ]


def simulator(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8001,
    api_key: Annotated[
        str | None, typer.Option(help="Accept only this key (default: any non-empty key).")
    ] = None,
    workers: Annotated[int, typer.Option(help="Simulated GPU workers.")] = 2,
    job_duration_ms: Annotated[int, typer.Option(help="Mean job run time.")] = 1500,
    cold_start_ms: Annotated[int, typer.Option(help="Delay when a cold worker starts.")] = 0,
    output_shape: Annotated[
        str, typer.Option(help="Worker output shape to mimic.")
    ] = "worker-sdxl",
    fail_rate: Annotated[float, typer.Option(help="Fraction of jobs that end FAILED.")] = 0.0,
    knob: Annotated[
        list[str] | None,
        typer.Option(
            "--set", help="Any other knob as NAME=JSON, e.g. --set 'error_rates={\"status\":0.2}'."
        ),
    ] = None,
    endpoints_file: Annotated[
        Path | None,
        typer.Option(
            "--endpoints",
            help="JSON or TOML file: a table of knob overrides per endpoint id, each endpoint "
            "with its own workers (see docs/SIMULATOR.md).",
        ),
    ] = None,
    endpoint: Annotated[
        list[str] | None,
        typer.Option(
            "--endpoint",
            help="Configure one endpoint as ID or ID:NAME=JSON,NAME=JSON, e.g. "
            "--endpoint 'flux:workers=1,cold_start_ms=4000' (repeatable; over --endpoints).",
        ),
    ] = None,
) -> None:
    """Serve a RunPod-compatible API on HOST:PORT (see docs/SIMULATOR.md for knobs)."""
    from pydantic import ValidationError

    from app.simulator.config import SimulatorConfig
    from app.simulator.endpoints import Endpoints, KnobError
    from app.simulator.server import serve
    from app.simulator.specs import assignment, merge_endpoints

    values: dict[str, Any] = {
        "api_key": api_key,
        "workers": workers,
        "job_duration_ms": job_duration_ms,
        "cold_start_ms": cold_start_ms,
        "output_shape": output_shape,
        "fail_rate": fail_rate,
    }
    try:
        values.update(assignment(item) for item in knob or [])
        endpoints = merge_endpoints(endpoints_file, endpoint or [])
        config = SimulatorConfig.model_validate(values)
        Endpoints(config, endpoints)  # to refuse a bad one here, in one line
    except ValidationError as error:
        first = error.errors()[0]
        raise BadValue(f"{'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    except KnobError as error:
        raise BadValue(f"endpoint {error}") from None
    except (OSError, ValueError) as error:
        raise BadValue(str(error)) from None
    serve(config, host=host, port=port, endpoints=endpoints)


def worker(
    concurrency: Annotated[int, typer.Option(help="Tasks run at once (threads).", min=1)] = 8,
    beat: Annotated[bool, typer.Option(help="Embed Celery beat, which drives tracking.")] = True,
    loglevel: Annotated[str, typer.Option(help="Celery's log level.")] = "WARNING",
    max_restarts: Annotated[
        int, typer.Option(help="Restarts in a row before giving up (0: none).", min=0)
    ] = RestartPolicy.limit,
) -> None:
    """A Celery worker for every queue (the same one `podrelay dev` starts).

    A worker that fails (exits with an error status or is killed) is started again, after 1 s
    and twice as long each time, at most MAX_RESTARTS times in a row. Ctrl-C or SIGTERM stops it.
    """
    settings_or_exit()  # one clear line for a bad setting, before Celery starts
    argv = worker_argv(concurrency=concurrency, beat=beat, loglevel=loglevel)
    policy = RestartPolicy(limit=max_restarts)
    say = partial(typer.echo, err=True)
    raise typer.Exit(supervise(argv, name="worker", policy=policy, say=say))


class Benchmark(StrEnum):
    INFLIGHT = "inflight"
    SUBMIT = "submit"
    CLIENT_OVERHEAD = "client-overhead"
    ALL = "all"


# Module, and the arguments of its small-scale run (as `make bench-quick`), in `all`'s order.
BENCHMARKS: dict[Benchmark, tuple[str, list[str]]] = {
    Benchmark.CLIENT_OVERHEAD: ("bench.client_overhead", ["--requests", "500", "--rounds", "1"]),
    Benchmark.SUBMIT: ("bench.submit", ["--quick"]),
    Benchmark.INFLIGHT: ("bench.inflight", ["--quick"]),
}


def bench(
    context: typer.Context,
    which: Annotated[Benchmark, typer.Argument(help="The benchmark to run.")] = Benchmark.ALL,
    quick: Annotated[bool, typer.Option(help="Small scale: minutes instead of ~20.")] = False,
) -> None:
    """Run the benchmarks under bench/ (from a source checkout).

    Further arguments go to the one benchmark named, e.g. `podrelay bench inflight --jobs 500`.
    """
    if not (REPO_ROOT / "bench" / "__init__.py").is_file():
        raise CliError(f"the benchmarks are not here: no bench/ package in {REPO_ROOT}")
    chosen = list(BENCHMARKS) if which is Benchmark.ALL else [which]
    if context.args and len(chosen) > 1:
        raise CliError("extra arguments go to one benchmark: name it, e.g. `podrelay bench submit`")
    for name in chosen:
        module, quick_args = BENCHMARKS[name]
        argv = [sys.executable, "-m", module, *(quick_args if quick else []), *context.args]
        typer.echo(f"== {name}: {' '.join(argv[1:])}", err=True)
        code = subprocess.run(argv, cwd=REPO_ROOT, check=False).returncode  # noqa: S603
        if code != 0:
            raise CliError(f"the {name} benchmark failed (exit status {code})")
