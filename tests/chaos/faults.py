"""The faults the chaos scenarios inject, each blocking until the fault is over."""

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.chaos.cluster import Cluster
from tests.media.s3_server import S3Server
from tests.stack.postgres_server import PostgresServer

OUTAGE_S = 3.0
OBJECT_STORE_OUTAGE_S = 20.0
ENDPOINT_OUTAGE_S = 20.0
# The route of the endpoint-outage scenario: the first endpoint loses its GPUs.
OUTAGE_ENDPOINTS = ("ep-a", "ep-b")
# The storm and the webhook loss last at least this long, and until every job is submitted.
SIMULATOR_FAULT_S = 20.0
LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")
FAKETIME_SHIM = Path(__file__).parent / "faketime_shim"
# The simulator under the storm: every fault the issue names at once.
STORM: dict[str, Any] = {
    "error_rates": {"run": 0.1, "status": 0.2, "cancel": 0.2},  # 5xx
    "throttle_rates": {"run": 0.05, "status": 0.1},
    "throttle_burst": {"run": 40, "status": 80},  # 429 bursts
    "latency_ms": {"run": 300, "status": 700},  # slow responses
    "drop_run_response_rate": 0.05,  # the job is created, its /run answer is lost
    "drop_mode": "error",
    "fail_rate": 0.1,  # FAILED
    "empty_output_rate": 0.05,  # COMPLETED without output
    "ttl_cap_ms": 5000,  # jobs not done 5 s after submission expire at RunPod
}
CALM: dict[str, Any] = {
    "error_rates": {},
    "throttle_rates": {},
    "throttle_burst": {},
    "latency_ms": {},
    "drop_run_response_rate": 0.0,
    "fail_rate": 0.0,
    "empty_output_rate": 0.0,
    "ttl_cap_ms": 0,
}


@dataclass
class Context:
    cluster: Cluster
    postgres: PostgresServer | None
    submit_timeout_s: float
    object_store: S3Server | None = None


def kill_worker(context: Context) -> None:
    """kill -9 one of the two workers (its whole process group) and start it again."""
    context.cluster.stack.kill_worker("worker-a")
    time.sleep(OUTAGE_S)
    context.cluster.start_worker("worker-a")


def restart_redis(context: Context) -> None:
    """The broker dies with every message it held (no persistence) and comes back empty."""
    context.cluster.redis.kill()
    time.sleep(OUTAGE_S)
    context.cluster.redis.start()


def restart_postgres(context: Context) -> None:
    """The ledger's server crashes (immediate shutdown: every connection cut) and restarts."""
    assert context.postgres is not None
    context.postgres.stop(mode="immediate")
    time.sleep(OUTAGE_S)
    context.postgres.start()


def object_store_outage(context: Context) -> None:
    """The S3 server (the media store of both workers and APIs) stops answering for 20 s
    (SIGSTOP: connections hang); images wait for it and are stored once it is back."""
    assert context.object_store is not None
    stack = context.cluster.stack
    context.object_store.freeze()
    try:
        time.sleep(OBJECT_STORE_OUTAGE_S)
        waiting = stack.progress().pending_images
    finally:
        context.object_store.thaw()
    stack.mark(f"{waiting} images waited for the object store")
    assert waiting > 0, "the outage met no image: it proves nothing"


def endpoint_outage(context: Context) -> None:
    """One of the route's two endpoints (ep-a, ep-b, equal weights) loses its GPUs for 20 s
    (throttled: its jobs wait IN_QUEUE); the jobs RunPod holds in its queue move to the other
    once RunPod confirmed their cancel."""
    stack = context.cluster.stack
    down = OUTAGE_ENDPOINTS[0]
    stack.simulator.set_endpoint(down, throttled=True)
    try:
        time.sleep(ENDPOINT_OUTAGE_S)
    finally:
        stack.simulator.set_endpoint(down, throttled=None)
    moved = sum(any(kind == "moved" for kind, *_ in job.events) for job in stack.jobs())
    stack.mark(f"{moved} jobs moved off {down}")
    assert moved > 0, f"no job was queued at {down} during its outage: it proves nothing"


def _simulator_fault(context: Context, fault: dict[str, Any], calm: dict[str, Any]) -> None:
    simulator = context.cluster.stack.simulator
    simulator.set_faults(**fault)
    try:
        time.sleep(SIMULATOR_FAULT_S)
        context.cluster.wait_submitted(context.submit_timeout_s)
    finally:
        simulator.set_faults(**calm)


def fault_storm(context: Context) -> None:
    """Every simulator fault at once, from the first job until all are submitted (20 s or
    more): 5xx, 429 bursts, slow answers, lost /run answers, FAILED, COMPLETED without
    output, ttl expiry."""
    _simulator_fault(context, STORM, CALM)


def drop_webhooks(context: Context) -> None:
    """Every RunPod webhook lost, from a fifth of the jobs until all are submitted (20 s or
    more)."""
    _simulator_fault(context, {"webhook_drop_rate": 1.0}, {"webhook_drop_rate": 0.0})


def skewed_clock(context: Context) -> None:
    """worker-b's wall clock is off (libfaketime) for the whole run, which is over for the
    purpose of recovery once every job is submitted."""
    context.cluster.wait_submitted(context.submit_timeout_s)


def faketime_env(offset: str) -> dict[str, str]:
    """The environment that runs a process `offset` (e.g. "+60s") off the real clock.

    The wall clock only: a skewed machine's monotonic clock still ticks at the same rate
    (and see `faketime_shim/sitecustomize.py`). Fails, naming the package, when libfaketime
    is missing; checks that Python's clocks are skewed and that sleeping still works.
    """
    if not LIBFAKETIME.exists():
        raise AssertionError(
            f"{LIBFAKETIME} is missing: the clock-skew scenarios need libfaketime "
            "(Debian package `faketime`: apt-get install -y faketime)"
        )
    paths = [str(FAKETIME_SHIM), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {
        "LD_PRELOAD": str(LIBFAKETIME),
        "FAKETIME": offset,
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        "PYTHONPATH": os.pathsep.join(paths),
    }
    code = (
        "import datetime, time; time.sleep(0.01); "
        "print(time.time(), datetime.datetime.now().timestamp())"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"Python under libfaketime failed:\n{done.stderr[-2000:]}"
    expected = float(offset.removesuffix("s"))
    for seen in map(float, done.stdout.split()):
        skew = seen - time.time()
        assert abs(skew - expected) < 10, f"libfaketime did not skew Python's clock: {skew:+.1f}"
    return env
