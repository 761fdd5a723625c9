"""Knob values written on the command line or in a file, for `podrelay simulator`.

`--set NAME=JSON` sets a global knob. Endpoints come from `--endpoints FILE`, a JSON object or
TOML document with one table of knob overrides per endpoint id, and from `--endpoint
ID[:NAME=JSON,NAME=JSON...]`, applied over the file. A value that is not JSON is a string.
"""

import json
import re
import tomllib
from pathlib import Path
from typing import Any

# The comma before the next `name=`; commas inside JSON values (`{"a":1,"b":2}`) do not match.
_NEXT_KNOB = re.compile(r",(?=\s*[a-z_][a-z0-9_]*=)")

Endpoints = dict[str, dict[str, Any]]


def knob_value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def assignment(text: str) -> tuple[str, Any]:
    """`NAME=JSON` as (name, value).

    Raises:
        ValueError: no `=`, or no name before it.
    """
    name, equals, raw = text.partition("=")
    if not equals or not name.strip():
        raise ValueError(f"expected NAME=VALUE, got {text!r}")
    return name.strip(), knob_value(raw)


def endpoint_option(text: str) -> tuple[str, dict[str, Any]]:
    """`ID` or `ID:NAME=JSON,NAME=JSON` as (endpoint id, overrides).

    Raises:
        ValueError: no endpoint id, or a knob without `=`.
    """
    endpoint_id, _, knobs = text.partition(":")
    if not endpoint_id.strip():
        raise ValueError(f"expected ID[:NAME=VALUE,...], got {text!r}")
    pairs = [assignment(part) for part in _NEXT_KNOB.split(knobs)] if knobs.strip() else []
    return endpoint_id.strip(), dict(pairs)


def load_endpoints(path: Path) -> Endpoints:
    """Read an endpoints file: TOML if its name ends in `.toml`, JSON otherwise.

    Raises:
        OSError: the file cannot be read.
        ValueError: it does not parse, or is not a table of tables.
    """
    text = path.read_text(encoding="utf-8")
    data: Any = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ValueError(f"{path}: expected a table of knob overrides per endpoint id")
    return data


def merge_endpoints(path: Path | None, options: list[str]) -> Endpoints:
    """The file's endpoints, then each `--endpoint` option merged over them.

    Raises:
        OSError, ValueError: as `load_endpoints` and `endpoint_option`.
    """
    endpoints = load_endpoints(path) if path is not None else {}
    for option in options:
        endpoint_id, knobs = endpoint_option(option)
        endpoints[endpoint_id] = {**endpoints.get(endpoint_id, {}), **knobs}
    return endpoints
