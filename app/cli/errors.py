"""The command line's failures: each printed by `app.cli.main` as one `error: ...` line."""

import typer


class CliError(typer.TyperException):
    """A failure worth one line on stderr; exit status 1."""


class BadValue(CliError):
    """An option's value is invalid (exit status 2, as for Click's usage errors)."""

    exit_code = 2
