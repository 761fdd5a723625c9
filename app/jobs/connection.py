"""The connection test: is the key accepted, what do RunPod's workers do, how far is it."""

import time
from typing import Any

from app.runpod import AuthenticationError, RunPodClient, RunPodError


async def check_connection(client: RunPodClient) -> dict[str, Any]:
    """Call /health once and describe the outcome; never raises a RunPod error."""
    started = time.perf_counter()
    try:
        report = await client.health()
    except AuthenticationError as error:
        return _result(started, ok=False, key_accepted=False, error=error.message)
    except RunPodError as error:
        return _result(started, ok=False, key_accepted=None, error=error.message)
    return _result(
        started, ok=True, key_accepted=True, workers=report.workers, jobs=report.jobs, error=None
    )


def _result(started: float, **fields: Any) -> dict[str, Any]:
    return {"latency_ms": round((time.perf_counter() - started) * 1000, 1), **fields}
