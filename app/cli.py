"""The `podrelay` command line."""

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer

from app.core.config import settings_or_exit

if TYPE_CHECKING:
    from app.core.db import Database

cli = typer.Typer(help="Podrelay: a job gateway for RunPod Serverless.", no_args_is_help=True)
keys = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)
cli.add_typer(keys, name="keys")


@cli.command()
def run() -> None:
    """Start the whole local stack: simulator (when no RunPod is configured) and API."""
    from app.devstack import API_HOST, API_PORT, run_stack, stack_services

    settings = settings_or_exit()
    services = stack_services(settings)
    target = settings.runpod_target
    print(f"Podrelay API      http://{API_HOST}:{API_PORT}  (docs: /docs)")
    print(f"RunPod target     {target.base_url}/{target.endpoint_id}")
    print("Ctrl-C stops everything.\n")
    raise typer.Exit(run_stack(services))


@cli.command()
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
) -> None:
    """Serve a RunPod-compatible API on HOST:PORT (see app/simulator/config.py for knobs)."""
    from pydantic import ValidationError

    from app.simulator.config import SimulatorConfig
    from app.simulator.server import serve

    values: dict[str, Any] = {
        "api_key": api_key,
        "workers": workers,
        "job_duration_ms": job_duration_ms,
        "cold_start_ms": cold_start_ms,
        "output_shape": output_shape,
        "fail_rate": fail_rate,
    }
    for item in knob or []:
        name, _, raw = item.partition("=")
        try:
            values[name.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            values[name.strip()] = raw
    try:
        config = SimulatorConfig.model_validate(values)
    except ValidationError as error:
        first = error.errors()[0]
        typer.echo(f"error: {'.'.join(map(str, first['loc']))}: {first['msg']}", err=True)
        raise typer.Exit(2) from None
    serve(config, host=host, port=port)


def _database() -> "Database":
    from app.core.db import Database
    from app.core.migrate import upgrade_database

    database = Database(settings_or_exit().database_url)
    upgrade_database(database)
    return database


@keys.command("create")
def keys_create(
    name: Annotated[str, typer.Argument(help="Who or what the key is for.")],
    admin: Annotated[bool, typer.Option(help="Allow queue stats and the connection test.")] = False,
) -> None:
    """Create a key; its secret and webhook signing secret are printed once, never stored."""
    from app.accounts.service import create_key

    with _database().session() as session:
        key, plaintext = create_key(session, name=name, is_admin=admin)
        print(f"id:             {key.id}")
        print(f"api key:        {plaintext}")
        print(f"webhook secret: {key.webhook_secret}")
        print("Keep the API key now: only its hash is stored.")


@keys.command("list")
def keys_list() -> None:
    """List keys (prefix only, never the secret)."""
    from rich.console import Console
    from rich.table import Table

    from app.accounts.service import list_keys

    table = Table("id", "name", "prefix", "admin", "created", "revoked")
    with _database().session() as session:
        for key in list_keys(session):
            revoked = key.revoked_at.isoformat(timespec="seconds") if key.revoked_at else ""
            table.add_row(
                key.id,
                key.name,
                key.prefix + "...",
                "yes" if key.is_admin else "",
                key.created_at.isoformat(timespec="seconds"),
                revoked,
            )
    Console().print(table)


@keys.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="The key's id (key_...).")]) -> None:
    """Revoke a key at once; requests with it get 401 from then on."""
    from app.accounts.service import revoke_key

    with _database().session() as session:
        if revoke_key(session, key_id) is None:
            typer.echo(f"error: no key {key_id}", err=True)
            raise typer.Exit(1)
    print(f"revoked {key_id}")


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
