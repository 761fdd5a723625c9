"""The `podrelay` command line.

Local processes: `dev` (alias `run`), `simulator`, `worker`, `bench`, `keys`. Against a running
API over HTTP: `generate`, `status`, `cancel`, `models`. Every failure is one `error: ...` line
on stderr and a non-zero exit status, never a traceback.
"""

import typer

# Typer vendors Click; its usage errors are shown here as one line instead of a panel.
from typer._click.exceptions import NoArgsIsHelpError

from app.cli import jobs, keys, local, models

cli = typer.Typer(
    help="Podrelay: a job gateway for RunPod Serverless.",
    no_args_is_help=True,
    rich_markup_mode="markdown",  # reflows the docstrings
    pretty_exceptions_show_locals=False,  # locals may hold API keys
)
cli.command()(local.dev)
cli.command("run", help="The same as `dev`.")(local.dev)
cli.command()(local.simulator)
cli.command()(local.worker)
cli.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(
    local.bench
)
cli.command()(jobs.generate)
cli.command()(jobs.status)
cli.command()(jobs.cancel)
cli.command()(models.models)
cli.add_typer(keys.keys, name="keys")


def main(argv: list[str] | None = None) -> None:
    """Run the command line; exits with the command's status."""
    try:
        code = cli(args=argv, prog_name="podrelay", standalone_mode=False)
    except NoArgsIsHelpError as usage:
        usage.show()
        code = usage.exit_code
    except typer.TyperException as error:
        message = " ".join(error.format_message().split())
        typer.echo(f"error: {message}", err=True)
        code = error.exit_code
    except typer.Abort:
        typer.echo("error: aborted", err=True)
        code = 1
    raise SystemExit(code if isinstance(code, int) else 0)
