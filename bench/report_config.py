"""A benchmark's configuration as the report shows it: the command line that reproduces it and
how much smaller than `make bench`'s it was."""

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench import client_overhead, dispatch, failover, fairness, inflight, submit

PYTHON = ".venv/bin/python"
NOT_FLAGS = {"json", "keep"}  # where the output goes, not what is measured

Doc = dict[str, Any]  # a JSON document, or its configuration


@dataclass(frozen=True)
class Bench:
    name: str  # the JSON file's stem and the module bench.<name>
    parse_args: Callable[[list[str]], argparse.Namespace]
    scale: tuple[str, ...]  # the configuration that makes a run smaller than `make bench`'s

    def command(self, config: Doc, **overrides: Any) -> str:
        """The command line that runs this benchmark with `config` (plus `overrides`)."""
        wanted = {**config, **overrides}
        known = vars(self.parse_args([])).keys() - NOT_FLAGS
        argv = [_flag(key) for key, value in wanted.items() if value is True and key in known]
        for _ in range(3):  # a flag such as --quick changes other defaults: re-check
            current = vars(self.parse_args(argv))
            differing = [
                key
                for key, value in current.items()
                if key not in NOT_FLAGS
                and wanted.get(key) is not None
                and not isinstance(wanted[key], bool)
                and wanted[key] != value
            ]
            if not differing:
                break
            for key in differing:
                argv += [_flag(key), _value(wanted[key])]
        return " ".join([PYTHON, "-m", f"bench.{self.name}", *argv])

    def reduced(self, config: Doc) -> str | None:
        """How a run was smaller than the full one, or None when it was not."""
        full = vars(self.parse_args([]))
        smaller = [
            f"{key} {shown(config[key])} (full: {shown(full[key])})"
            for key in self.scale
            if key in config and config[key] < full[key]
        ]
        return "quick scale: " + ", ".join(smaller) if smaller else None


CLIENT_OVERHEAD = Bench("client_overhead", client_overhead.parse_args, ("requests", "rounds"))
SUBMIT = Bench("submit", submit.parse_args, ("duration", "rounds"))
INFLIGHT = Bench("inflight", inflight.parse_args, ("jobs", "duration"))
DISPATCH = Bench("dispatch", dispatch.parse_args, ("jobs",))
FAIRNESS = Bench("fairness", fairness.parse_args, ("a_jobs",))
FAILOVER = Bench("failover", failover.parse_args, ("duration",))
BENCHES = (CLIENT_OVERHEAD, SUBMIT, INFLIGHT, DISPATCH, FAIRNESS, FAILOVER)


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def _value(value: Any) -> str:
    """A value as a command-line argument: exact, and 5 rather than 5.0."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return repr(value) if isinstance(value, float) else str(value)


def shown(value: Any) -> str:
    """A configuration value for reading: 10,000 jobs, load average 3.36."""
    if isinstance(value, list):
        return " ".join(map(shown, value))
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)
