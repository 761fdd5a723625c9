"""The configuration table of the README, generated from `Settings`.

python -m app.core.settings_doc                   # print the table
python -m app.core.settings_doc --write README.md # replace it between the markers
python -m app.core.settings_doc --check README.md # exit 1 when the file's table is stale
"""

import argparse
import sys
from enum import Enum
from pathlib import Path

from pydantic import SecretStr
from pydantic.fields import FieldInfo

from app.core.config import Settings

START = "<!-- settings-table:start -->"
END = "<!-- settings-table:end -->"


class StaleTableError(Exception):
    """The document has no settings-table markers, or they are out of order."""


def format_default(value: object) -> str:
    if value is None:
        return "unset"
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float):
        return f"`{value:g}`"
    return f"`{value}`"


def _row(name: str, field: FieldInfo) -> str:
    description = (field.description or "").replace("|", "\\|").replace("\n", " ")
    return f"| `{name.upper()}` | {format_default(field.default)} | {description} |"


def render_table() -> str:
    """One markdown row per setting, in the order `Settings` declares them."""
    rows = [_row(name, field) for name, field in Settings.model_fields.items()]
    return "\n".join(["| variable | default | meaning |", "|---|---|---|", *rows])


def replace_table(document: str, table: str) -> str:
    """`document` with the text between the markers replaced by `table`."""
    head, start, rest = document.partition(START)
    _, end, tail = rest.partition(END)
    if not start or not end:
        raise StaleTableError(f"the document needs {START} and then {END}")
    return f"{head}{START}\n{table}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.core.settings_doc", description=__doc__)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--write", type=Path, metavar="FILE", help="update FILE's table")
    group.add_argument("--check", type=Path, metavar="FILE", help="exit 1 if FILE is stale")
    args = parser.parse_args(argv)
    table = render_table()
    target: Path | None = args.write or args.check
    if target is None:
        sys.stdout.write(table + "\n")
        return 0
    document = target.read_text(encoding="utf-8")
    try:
        updated = replace_table(document, table)
    except StaleTableError as error:
        sys.stderr.write(f"error: {target}: {error}\n")
        return 2
    if args.check:
        if updated != document:
            sys.stderr.write(f"{target}: the settings table is stale; run with --write\n")
            return 1
        return 0
    target.write_text(updated, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
