"""`podrelay models`: the routes of a running API and their endpoints' health, as a table."""

from datetime import UTC, datetime
from typing import Annotated

import typer
from pydantic import TypeAdapter
from rich.console import Console
from rich.table import Table

from app.cli.api import DEFAULT_API_URL, podrelay_api
from app.cli.jobs import ApiKey, ApiUrl
from podrelay_client import EndpointHealth, Model


def models(
    as_json: Annotated[bool, typer.Option("--json", help="The models as JSON.")] = False,
    api_url: ApiUrl = DEFAULT_API_URL,
    api_key: ApiKey = None,
) -> None:
    """The models (routes) a job may name with `--model`, and each RunPod endpoint's health:
    workers, RunPod's queue, recent times and circuit."""
    with podrelay_api(api_url, api_key) as api:
        listed = api.models()
    if as_json:
        typer.echo(TypeAdapter(list[Model]).dump_json(listed, indent=2).decode())
        return
    table = Table()
    table.add_column("model", no_wrap=True)
    table.add_column("endpoint", no_wrap=True)
    for column in ("weight", "workers", "runpod", "podrelay", "p50", "circuit", "checked"):
        table.add_column(column, overflow="fold")
    now = datetime.now(UTC)
    for model in listed:
        for index, endpoint in enumerate(model.endpoints):
            table.add_row(
                _model_cell(model) if index == 0 else "",
                endpoint.id,
                f"{endpoint.weight:g}",
                _workers(endpoint),
                _runpod(endpoint),
                _podrelay(model, endpoint, first=index == 0),
                _p50(endpoint),
                _circuit(endpoint, now),
                _ago(endpoint.checked_at, now),
            )
    Console().print(table)


def _model_cell(model: Model) -> str:
    default = " (default)" if model.default else ""
    fallbacks = f"\nfallbacks: {', '.join(model.fallbacks)}" if model.fallbacks else ""
    return f"{model.name}{default}\n{model.kind}, ${model.price_per_second:g}/s{fallbacks}"


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)


def _workers(endpoint: EndpointHealth) -> str:
    workers = endpoint.workers
    if endpoint.checked_at is None:
        return "not checked"
    parts = [
        f"{_count(workers.idle)} idle",
        f"{_count(workers.running)} running",
        f"{_count(workers.throttled)} throttled",
    ]
    for name in ("initializing", "unhealthy"):
        count = getattr(workers, name)
        if count:
            parts.append(f"{count} {name}")
    return ", ".join(parts)


def _runpod(endpoint: EndpointHealth) -> str:
    jobs = endpoint.runpod_jobs
    return f"{_count(jobs.in_queue)} queued, {_count(jobs.in_progress)} running"


def _podrelay(model: Model, endpoint: EndpointHealth, *, first: bool) -> str:
    held = f"{endpoint.queued_jobs} queued, {endpoint.running_jobs} running"
    return f"{model.pending_jobs} pending\n{held}" if first else held


def _p50(endpoint: EndpointHealth) -> str:
    def ms(value: int | None) -> str:
        return "-" if value is None else f"{value / 1000:.1f} s"

    return f"queue {ms(endpoint.queue_delay_p50_ms)}, run {ms(endpoint.execution_p50_ms)}"


def _circuit(endpoint: EndpointHealth, now: datetime) -> str:
    if endpoint.circuit == "closed":
        return "closed"
    retry = f" (retry in {_seconds(endpoint.retry_at, now)})" if endpoint.retry_at else ""
    reason = f": {endpoint.circuit_reason}" if endpoint.circuit_reason else ""
    return f"{endpoint.circuit}{retry}{reason}"


def _ago(moment: datetime | None, now: datetime) -> str:
    return "never" if moment is None else f"{_seconds(now, moment)} ago"


def _seconds(later: datetime | None, earlier: datetime | None) -> str:
    if later is None or earlier is None:
        return "-"
    return f"{max(0.0, (later - earlier).total_seconds()):.0f} s"
