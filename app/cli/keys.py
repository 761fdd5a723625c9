"""`podrelay keys create|list|revoke`: API keys, straight in the ledger."""

from typing import TYPE_CHECKING, Annotated

import typer

from app.core.config import settings_or_exit
from app.scheduler.fair import Priority

if TYPE_CHECKING:
    from app.core.db import Database

keys = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)


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
    max_priority: Annotated[
        Priority | None,
        typer.Option(help="The highest priority its jobs may ask for (default: the setting's)."),
    ] = None,
    weight: Annotated[
        float | None,
        typer.Option(min=0.01, max=100, help="Its share of capacity against other keys' (1)."),
    ] = None,
) -> None:
    """Create a key; its secret and webhook signing secret are printed once, never stored."""
    from app.accounts.service import create_key

    with _database().session() as session:
        key, plaintext = create_key(session, name=name, is_admin=admin)
        key.max_priority = max_priority.value if max_priority else None
        key.weight = weight
        typer.echo(f"id:             {key.id}")
        typer.echo(f"api key:        {plaintext}")
        typer.echo(f"webhook secret: {key.webhook_secret}")
        typer.echo("Keep the API key now: only its hash is stored.")


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
    typer.echo(f"revoked {key_id}")
