"""Start again a child process that fails, as a process supervisor would.

`podrelay worker` and `podrelay dev` restart a Celery worker that exits with an error status
or is killed: after 1 s, then twice as long each time, and not at all after `limit` failures
in a row (a crash loop ends, visibly). A child that ran `stable_after_s` before failing starts
a new row.
"""

import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from app.core.parent_death import tied

_STOP_POLL_S = 0.1


@dataclass(frozen=True)
class RestartPolicy:
    limit: int = 5
    first_delay_s: float = 1.0
    max_delay_s: float = 30.0
    stable_after_s: float = 60.0


@dataclass
class Restarts:
    """One child's restarts under `policy`."""

    policy: RestartPolicy
    in_a_row: int = 0

    def after_failure(self, ran_for_s: float) -> float | None:
        """Seconds to wait before starting the child again; None: leave it stopped."""
        if ran_for_s >= self.policy.stable_after_s:
            self.in_a_row = 0
        if self.in_a_row >= self.policy.limit:
            return None
        delay = min(self.policy.max_delay_s, self.policy.first_delay_s * 2.0**self.in_a_row)
        self.in_a_row += 1
        return delay

    def report(self, name: str, code: int, delay: float | None) -> str:
        """The log line for a failure of child `name` and what `after_failure` decided."""
        if delay is None:
            return (
                f"{name} {describe_exit(code)} after {self.in_a_row} restarts in a row; giving up"
            )
        return (
            f"{name} {describe_exit(code)}; restarting it in {delay:g} s "
            f"(restart {self.in_a_row} of at most {self.policy.limit} in a row)"
        )


def describe_exit(code: int) -> str:
    if code < 0:
        return f"was killed by {signal.Signals(-code).name}"
    return f"exited with status {code}"


def exit_status(code: int) -> int:
    """A child's return code as a shell reports it (128 + N when killed by signal N)."""
    return 128 - code if code < 0 else code


def signal_group(process: "subprocess.Popen[Any]", signum: signal.Signals) -> None:
    """Signal the process group `process` leads (its leftovers too, once it is gone)."""
    try:
        os.killpg(process.pid, signum)
    except ProcessLookupError:
        pass


def supervise(
    argv: list[str], *, name: str, policy: RestartPolicy, say: Callable[[str], None]
) -> int:
    """Run `argv` until it exits with status 0 or is stopped; returns the exit status to use.

    SIGINT and SIGTERM go to the child (in its own process group, so that a terminal's Ctrl-C
    reaches it once, through here) and stop the supervision; a failure starts it again.
    """
    restarts = Restarts(policy)
    child: subprocess.Popen[bytes] | None = None
    stopping = False

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        if child is not None:
            signal_group(child, signal.Signals(signum))

    previous = {
        signum: signal.signal(signum, forward) for signum in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        while True:
            started = time.monotonic()
            # In its own process group, and stopped if the supervisor is killed.
            child = subprocess.Popen(tied(argv), process_group=0)  # noqa: S603 - the caller's
            code = child.wait()
            # The embedded beat outlives a worker killed with SIGKILL.
            signal_group(child, signal.SIGKILL)
            if stopping or code == 0:
                return exit_status(code)
            delay = restarts.after_failure(time.monotonic() - started)
            say(restarts.report(name, code, delay))
            if delay is None:
                return exit_status(code)
            deadline = time.monotonic() + delay
            while not stopping and time.monotonic() < deadline:
                time.sleep(_STOP_POLL_S)
            if stopping:
                return 0
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
