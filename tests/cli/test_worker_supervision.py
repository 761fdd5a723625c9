"""A Celery worker outlives Redis restarting, and `podrelay worker` / `podrelay dev` start
again a worker that exits anyway, with a back-off and a cap.

The worker used to exit when Redis restarted while it held an unacknowledged message
(celery/kombu#582, see app.core.redis_broker): the first two tests show kombu's own transport
failing in the exact sequence Celery runs, and ours not; the third runs a real worker through
Redis restarts with a countdown task held each time, the condition of that exit.
"""

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from kombu.exceptions import OperationalError

from app.celery_app import create_celery
from app.core import redis_broker
from app.core.config import Settings
from app.core.supervisor import RestartPolicy, supervise
from app.devstack import start_process, stop_process
from app.simulator.config import SimulatorConfig
from tests.cli.helpers import PODRELAY, cmdline, descendants, in_sessions, running
from tests.stack.deployment import GENERATE, SMALL_PARAMS, WorkerStack
from tests.stack.factory import StackFactory
from tests.stack.redis_server import RedisServer
from tests.stack.waiting import wait_until

pytestmark = pytest.mark.timeout(120)

RUNPOD = SimulatorConfig(workers=4, job_duration_ms=200, job_duration_jitter_ms=50)
REDIS_RESTARTS = 2
CELERY_WORKER = "-m celery -A app.celery_app worker"


@pytest.fixture
def redis_server(stacks: StackFactory) -> RedisServer:
    return stacks.redis()


@pytest.fixture
def stack(stacks: StackFactory, redis_server: RedisServer) -> WorkerStack:
    """A SQLite ledger, the private Redis as broker, and the simulator as RunPod."""
    simulator = stacks.simulator(RUNPOD)
    return stacks.build(
        ledger="sqlite", broker="redis", redis_server=redis_server, simulator=simulator
    )


def connection_to(server: RedisServer, tmp_path: Path, **options: Any) -> Any:
    """A broker connection of the Celery app built for `server` (kombu's `options`)."""
    settings = Settings(_env_file=None, redis_url=server.url, data_dir=tmp_path / "data")
    return create_celery(settings).connection_for_read(**options)


def lose_redis_mid_poll(connection: Any, server: RedisServer) -> None:
    """A worker's state when Redis goes: a message delivered and not acknowledged on the task
    channel, a BRPOP outstanding there and on a second channel (its remote control's)."""
    tasks = connection.SimpleQueue("tasks")
    tasks.put({"n": 1})
    assert tasks.get(timeout=5).payload == {"n": 1}
    control = connection.SimpleQueue("control", channel=connection.channel())
    with pytest.raises(control.Empty):
        control.get(timeout=0.2)  # leaves both BRPOPs waiting
    server.kill()


def close_as_celery_does(connection: Any) -> None:
    """What Celery's consumer does with a connection it lost (see its
    `Consumer.on_connection_error_after_connected`): anything but a connection error is fatal."""
    with contextlib.suppress(Exception):
        connection.collect()
    with contextlib.suppress(*connection.connection_errors, *connection.channel_errors):
        connection.close()


def test_kombus_redis_transport_fails_to_close_a_connection_redis_dropped(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    connection = connection_to(redis_server, tmp_path, transport="redis")  # kombu's own
    lose_redis_mid_poll(connection, redis_server)
    with pytest.raises(AttributeError, match="'NoneType' object has no attribute 'hostname'"):
        close_as_celery_does(connection)


def test_the_celery_apps_transport_closes_a_connection_redis_dropped(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    connection = connection_to(redis_server, tmp_path)
    assert isinstance(connection.transport, redis_broker.Transport)
    lose_redis_mid_poll(connection, redis_server)
    close_as_celery_does(connection)


def answers_ping(stack: WorkerStack) -> bool:
    """Some worker answers; False also while this process's own broker connection recovers."""
    try:
        return bool(stack.celery.control.ping(timeout=0.5))
    except (OperationalError, redis.ConnectionError):
        return False


def hold_countdown_task(stack: WorkerStack) -> None:
    """A task the worker keeps unacknowledged until its countdown ends (long after the test)."""
    kwargs = {"user_prompt": "later", "params": SMALL_PARAMS}
    stack.celery.send_task(GENERATE, kwargs=kwargs, countdown=3600)

    def held() -> bool:
        scheduled = stack.celery.control.inspect(timeout=0.5).scheduled() or {}
        return any(scheduled.values())

    wait_until(held, timeout=15, what="the worker holds the countdown task", details=stack.tail)


def complete_one_job(stack: WorkerStack) -> None:
    task_id = stack.send("after the restarts: a lighthouse", params=SMALL_PARAMS)
    [job] = stack.wait_settled(1, timeout=45)
    assert (job.celery_task_id, job.status) == (task_id, "completed"), job


def test_a_worker_survives_redis_restarts_and_keeps_consuming(
    stack: WorkerStack, redis_server: RedisServer
) -> None:
    worker = stack.start_worker(concurrency=2)
    for restart in range(REDIS_RESTARTS):
        hold_countdown_task(stack)
        redis_server.kill()
        time.sleep(1.0)
        redis_server.start()
        wait_until(
            lambda: answers_ping(stack) or worker.poll() is not None,
            timeout=30,
            what=f"the worker answers after Redis restart {restart + 1}",
            details=stack.tail,
        )
        assert worker.poll() is None, f"the worker exited at restart {restart + 1}\n{stack.tail()}"
    complete_one_job(stack)
    assert worker.poll() is None
    assert "Unrecoverable error" not in stack.tail(lines=100_000)


def celery_leader(supervisor: "subprocess.Popen[bytes]") -> int | None:
    """The supervised Celery worker: the process-group leader below `podrelay worker`."""
    for pid in descendants(supervisor.pid):
        with contextlib.suppress(ProcessLookupError):
            if CELERY_WORKER in cmdline(pid) and os.getpgid(pid) == pid:
                return pid
    return None


@contextlib.contextmanager
def podrelay_worker(stack: WorkerStack) -> Iterator["subprocess.Popen[bytes]"]:
    """`podrelay worker` with the stack's settings, in a session of its own; yields it once a
    worker answers, and kills whatever is left in that session afterwards."""
    log = stack.folder / "logs" / "podrelay-worker.log"
    stack.logs.append(log)
    argv = [*PODRELAY, "worker", "--concurrency", "2"]
    supervisor = start_process(argv, env=stack.env, log_path=log)
    try:
        wait_until(
            lambda: answers_ping(stack), timeout=60, what="a worker answers", details=stack.tail
        )
        yield supervisor
    finally:
        for pid in in_sessions({supervisor.pid}):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        stop_process(supervisor, kill=True)


def test_podrelay_worker_restarts_a_killed_worker_and_stops_on_sigterm(stack: WorkerStack) -> None:
    with podrelay_worker(stack) as supervisor:
        first = celery_leader(supervisor)
        assert first is not None
        before = descendants(supervisor.pid)  # the worker and its embedded beat
        os.kill(first, signal.SIGKILL)

        def replaced() -> bool:
            leader = celery_leader(supervisor)
            return leader not in (None, first) and answers_ping(stack)

        wait_until(replaced, timeout=60, what="a new worker answers", details=stack.tail)
        assert [pid for pid in before if running(pid)] == [], "the old worker's beat is left"
        complete_one_job(stack)

        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(timeout=30) == 0, stack.tail()
        assert in_sessions({supervisor.pid}) == set()
    output = stack.tail(lines=100_000)
    assert "worker was killed by SIGKILL; restarting it in 1 s (restart 1 of at most 5" in output


def test_a_worker_stops_when_podrelay_worker_is_killed(stack: WorkerStack) -> None:
    with podrelay_worker(stack) as supervisor:
        worker = celery_leader(supervisor)
        assert worker is not None
        os.kill(supervisor.pid, signal.SIGKILL)  # the supervisor alone, not its worker's group
        supervisor.wait(timeout=10)
        wait_until(
            lambda: not running(worker),
            timeout=30,
            what="the orphaned worker stops",
            details=stack.tail,
        )


def test_supervise_backs_off_and_gives_up_on_a_crash_loop() -> None:
    lines: list[str] = []
    policy = RestartPolicy(limit=2, first_delay_s=0.2)
    started = time.monotonic()
    argv = [sys.executable, "-c", "raise SystemExit(3)"]
    code = supervise(argv, name="flaky", policy=policy, say=lines.append)
    assert code == 3
    assert time.monotonic() - started >= 0.2 + 0.4
    assert lines == [
        "flaky exited with status 3; restarting it in 0.2 s (restart 1 of at most 2 in a row)",
        "flaky exited with status 3; restarting it in 0.4 s (restart 2 of at most 2 in a row)",
        "flaky exited with status 3 after 2 restarts in a row; giving up",
    ]


DEV_STACK = """
import os, sys
from app.core.supervisor import RestartPolicy
from app.devstack import Service, run_stack

flaky = [sys.executable, "-c", "raise SystemExit(3)"]
steady = [sys.executable, "-c", "import os, time; print(os.getpid(), flush=True); time.sleep(120)"]
policy = RestartPolicy(limit=2, first_delay_s=0.2)
raise SystemExit(run_stack([Service("flaky", flaky, restart=policy), Service("steady", steady)]))
"""


def test_dev_restarts_a_failing_worker_then_stops_the_stack(tmp_path: Path) -> None:
    log = tmp_path / "dev.log"
    dev = start_process([sys.executable, "-c", DEV_STACK], env=dict(os.environ), log_path=log)
    try:
        assert dev.wait(timeout=60) == 3, log.read_text()
    finally:
        stop_process(dev, kill=True)
    output = log.read_text()
    steady = int(output.split("steady   | ", 1)[1].split("\n", 1)[0])  # its first line: its pid
    assert not running(steady), "the rest of the stack was left running"
    assert "[flaky] exited with status 3; restarting it in 0.2 s (restart 1 of at most 2" in output
    assert "[flaky] exited with status 3; restarting it in 0.4 s (restart 2 of at most 2" in output
    assert "[flaky] exited with status 3 after 2 restarts in a row; giving up" in output
    assert "stopping" in output
