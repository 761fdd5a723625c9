"""Run a command that gets SIGTERM when the process that started it dies, even by SIGKILL.

    python -m app.core.parent_death <parent pid> <command> [args...]

`podrelay dev` and `podrelay worker` start their children in their own session or process
group, so that a terminal's Ctrl-C reaches them once, through their parent. Nothing then stops
them when that parent is killed; PR_SET_PDEATHSIG does (Linux only: elsewhere the command
simply runs). The setting survives exec, so this process sets it and becomes the command. It is
done here rather than in a `preexec_fn`, which is unsafe in a process with threads (`podrelay
dev` relays its children's output from threads). The signal comes when the parent's *thread*
that started the child ends, so start children from a thread that lives as long as they do.
"""

import ctypes
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def tied(argv: list[str]) -> list[str]:
    """`argv` run so that it gets SIGTERM when this process dies."""
    return [sys.executable, "-m", __name__, str(os.getpid()), *argv]


def main() -> None:
    parent, *argv = sys.argv[1:]
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != int(parent):  # it died before the line above could take effect
            raise SystemExit(128 + signal.SIGTERM)
    os.execvp(argv[0], argv)  # noqa: S606 - the command our own parent built


if __name__ == "__main__":
    main()
