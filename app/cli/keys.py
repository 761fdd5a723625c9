"""`podrelay keys create|list|revoke`: API keys, straight in the ledger."""

from typing import TYPE_CHECKING, Annotated

import typer

from app.core.config import settings_or_exit
from app.scheduler.fair import Priority

if TYPE_CHECKING:
    from datetime import datetime

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
    scope: Annotated[
        list[str] | None,
        typer.Option(
            help="jobs:create, jobs:read, images:read or admin; repeat for several "
            "(default: all but admin)."
        ),
    ] = None,
    origin: Annotated[
        list[str] | None,
        typer.Option(help="A publishable key for this web origin (repeat for several)."),
    ] = None,
    expires: Annotated[
        str | None, typer.Option(help="Lifetime: 30d, 12h, 90m (default: none).")
    ] = None,
    max_priority: Annotated[
        Priority | None,
        typer.Option(help="The highest priority its jobs may ask for (default: the setting's)."),
    ] = None,
    weight: Annotated[
        float | None,
        typer.Option(min=0.01, max=100, help="Its share of capacity against other keys' (1)."),
    ] = None,
    daily_budget: Annotated[
        float | None, typer.Option(min=0, help="USD per UTC day (default: BUDGET_DAILY_USD).")
    ] = None,
    monthly_budget: Annotated[
        float | None, typer.Option(min=0, help="USD per month (default: BUDGET_MONTHLY_USD).")
    ] = None,
    webhook_url: Annotated[
        str | None, typer.Option(help="Where its account events (budget.threshold) go.")
    ] = None,
) -> None:
    """Create a key; its secret and webhook signing secret are printed once, never stored."""
    from app.accounts.scopes import parse_origins, parse_scopes
    from app.accounts.service import KeyOptions, create_key, parse_duration
    from app.core.db import utcnow
    from app.core.errors import PodrelayError

    try:
        options = KeyOptions(
            is_admin=admin,
            scopes=parse_scopes(scope) if scope else None,
            origins=parse_origins(origin or []),
            expires_at=utcnow() + parse_duration(expires) if expires else None,
            max_priority=max_priority,
            weight=weight,
            daily_budget_usd=daily_budget,
            monthly_budget_usd=monthly_budget,
            webhook_url=webhook_url,
        )
    except (PodrelayError, ValueError) as error:
        typer.echo(f"error: {getattr(error, 'detail', error)}", err=True)
        raise typer.Exit(2) from None
    with _database().session() as session:
        key, plaintext = create_key(session, name=name, options=options)
        typer.echo(f"id:             {key.id}")
        typer.echo(f"api key:        {plaintext}")
        typer.echo(f"webhook secret: {key.webhook_secret}")
        if key.origins:
            typer.echo(f"publishable:    only from {key.origins}")
        if key.expires_at:
            typer.echo(f"expires:        {key.expires_at.isoformat(timespec='seconds')}")
        typer.echo("Keep the API key now: only its hash is stored.")


@keys.command("list")
def keys_list() -> None:
    """List keys (prefix only, never the secret)."""
    from rich.console import Console
    from rich.table import Table

    from app.accounts.scopes import key_scopes
    from app.accounts.service import list_keys

    table = Table()
    table.add_column("id", no_wrap=True)
    for column in ("name", "prefix", "scopes", "origins", "created", "expires", "revoked"):
        table.add_column(column, overflow="fold")
    with _database().session() as session:
        for key in list_keys(session):
            table.add_row(
                key.id,
                key.name,
                key.prefix + "...",
                " ".join(sorted(key_scopes(key.scopes, is_admin=key.is_admin))),
                key.origins or "",
                _when(key.created_at),
                _when(key.expires_at),
                _when(key.revoked_at),
            )
    Console().print(table)


def _when(moment: "datetime | None") -> str:
    return moment.isoformat(timespec="seconds") if moment else ""


@keys.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="The key's id (key_...).")]) -> None:
    """Revoke a key at once; requests with it get 401 from then on."""
    from app.accounts.service import revoke_key

    with _database().session() as session:
        if revoke_key(session, key_id) is None:
            typer.echo(f"error: no key {key_id}", err=True)
            raise typer.Exit(1)
    typer.echo(f"revoked {key_id}")
