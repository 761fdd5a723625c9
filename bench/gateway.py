"""One Podrelay gateway for a benchmark: its ledger migrated, API keys made, the API under
uvicorn and one Celery worker, all on 127.0.0.1 and stopped when the block ends."""

import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from app.accounts.service import create_key
from app.celery_app import create_celery
from app.core.config import Settings
from app.core.db import Database
from app.core.migrate import upgrade_database
from app.devstack import wait_http, worker_argv
from bench.stack import child_env, running, wait_ready


@dataclass(frozen=True)
class Gateway:
    base: str  # the API's base URL
    keys: list[str]  # the plaintext keys, in the order of their names
    ledger: Database


def gateway_settings(
    folder: Path, *, database_url: str, redis_url: str, runpod_url: str
) -> dict[str, str]:
    """The settings every benchmark's gateway shares: its files in `folder`, and no per-key
    limit in the way of the load it is sent."""
    return {
        "environment": "testing",
        "runpod_url": runpod_url,
        "runpod_api_key": "bench-key",
        "database_url": database_url,
        "redis_url": redis_url,
        "data_dir": str(folder / "data"),
        "media_dir": str(folder / "media"),
        "log_file": str(folder / "podrelay.log"),
        "requests_per_minute": "1000000",
        "creates_per_minute": "1000000",
        "max_concurrent_jobs": "0",
    }


@contextmanager
def gateway(
    folder: Path, values: dict[str, str], *, port: int, node: str, key_names: tuple[str, ...]
) -> Iterator[Gateway]:
    """Run the API on `port` and one worker named `node`, both with `values` as settings."""
    with ExitStack() as stack:
        ledger = Database(values["database_url"])
        upgrade_database(ledger)
        stack.callback(ledger.dispose)
        with ledger.session() as session:
            keys = [create_key(session, name=name)[1] for name in key_names]
        env = child_env(**values)
        api = [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1"]
        stack.enter_context(running([*api, "--port", str(port)], env, folder / "api.log"))
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/healthz")
        celery = create_celery(Settings.model_validate(values))
        stack.callback(celery.close)
        worker = stack.enter_context(
            running([*worker_argv(), "-n", node], env, folder / "worker.log")
        )
        wait_ready(celery, node, process=worker)
        yield Gateway(base, keys, ledger)
