"""Imported at start-up by the Python of a clock-skewed worker only (see `faketime_env`).

libfaketime (0.9.10) skews the wall clock; with the monotonic clock left real, it breaks
`time.sleep`, whose absolute monotonic `clock_nanosleep` it answers with EINVAL (Celery's
beat dies of it). With the monotonic clock faked too, every timed wait on a lock hangs. So the
monotonic clock stays real and `time.sleep` waits on an event, which libfaketime leaves alone.
"""

import threading
import time
from typing import SupportsIndex


def _sleep(seconds: float | SupportsIndex) -> None:
    delay = float(seconds)
    if delay < 0:
        raise ValueError("sleep length must be non-negative")
    threading.Event().wait(delay)


time.sleep = _sleep
