"""One isolated Podrelay deployment for a test: `WorkerStack`.

A stack has its own DATA_DIR, its own database (a SQLite file, or a fresh PostgreSQL
database), its own broker (the embedded one, or a private `redis-server` on a free port), free
ports, and a simulator started in the test process. The test process sends tasks through a
Celery app built from the same settings the children read from their environment, and reads
the ledger directly. Build stacks with `tests.stack.factory.StackFactory`.
"""

import time
from pathlib import Path
from typing import Any

import httpx

from app.celery_app import create_celery
from app.core.config import Settings
from app.core.db import Database
from app.core.migrate import upgrade_database
from app.media import open_store
from app.simulator.server import SimulatorServer
from tests.stack.ledger_views import ImageView, JobView, LedgerReader
from tests.stack.processes import ProcessGroup, clean_env
from tests.stack.waiting import wait_until

TASKS = "app.tasks.runpod_tasks"
GENERATE = f"{TASKS}.generate_image_runpod_task"
GENERATE_BATCH = f"{TASKS}.generate_image_batch_task"
SMALL_PARAMS: dict[str, Any] = {"width": 256, "height": 256}
ENDPOINT_ID = "podrelay-worker-test"
API_KEY = "worker-test-key"


class WorkerStack(ProcessGroup, LedgerReader):
    """Its processes (`ProcessGroup`), its ledger (`LedgerReader`), its broker and RunPod."""

    def __init__(
        self,
        *,
        folder: Path,
        simulator: SimulatorServer,
        database_url: str,
        redis_url: str | None,
        overrides: dict[str, Any],
        api_port: int | None = None,
    ) -> None:
        self._born = time.monotonic()
        self.simulator = simulator
        self.values: dict[str, Any] = {
            "environment": "testing",
            "runpod_url": f"{simulator.base_url}/{ENDPOINT_ID}/run",
            "runpod_api_key": API_KEY,
            "database_url": database_url,
            "redis_url": redis_url,
            "data_dir": folder / "data",
            "media_dir": folder / "media",
            "log_file": folder / "logs" / "app.log",
            "poll_sweep_interval": 0.5,
            "runpod_poll_interval": 1.0,
            "submit_retry_base": 1.0,
            "image_download_retry_base": 0.5,
            "reconcile_interval": 5.0,
            **overrides,
        }
        present = {name: value for name, value in self.values.items() if value is not None}
        self.settings = Settings(_env_file=None, **present)
        celery: Any = create_celery(self.settings)
        ProcessGroup.__init__(
            self, folder=folder, env=clean_env(**present), celery=celery, api_port=api_port
        )
        LedgerReader.__init__(self, Database(database_url))
        upgrade_database(self.db)
        self.store = open_store(self.settings)
        self._sim_http = httpx.Client(
            base_url=f"{simulator.base_url}/{ENDPOINT_ID}/",
            headers={"Authorization": f"Bearer {API_KEY}"},
            timeout=10,
        )

    def close(self) -> None:
        self.stop_all()
        self._sim_http.close()
        self.celery.close()
        self.db.dispose()

    # Tasks.

    def send(self, prompt: str, **kwargs: Any) -> str:
        """Send the seed's task through the broker; returns the Celery task id."""
        result = self.celery.send_task(GENERATE, kwargs={"user_prompt": prompt, **kwargs})
        task_id: str = result.id
        return task_id

    def send_batch(self, prompts: list[str], **kwargs: Any) -> Any:
        return self.celery.send_task(GENERATE_BATCH, kwargs={"prompts": prompts, **kwargs})

    # Waiting on the ledger.

    def mark(self, label: str) -> None:
        """Print how far into the test we are (shown with `pytest -s`)."""
        print(f"[{time.monotonic() - self._born:6.1f}s] {label}")

    def wait_accepted(self, count: int, *, timeout: float) -> None:
        """Wait until `count` jobs exist and RunPod accepted each of them."""
        wait_until(
            lambda: self.progress().accepted == count,
            timeout=timeout,
            what=f"{count} jobs accepted by RunPod",
            details=lambda: f"{self.progress()}\n{self.tail()}",
        )

    def wait_settled(self, count: int, *, timeout: float) -> list[JobView]:
        """Wait until `count` jobs exist and all are terminal with no image download left."""

        def settled() -> bool:
            now = self.progress()
            return now.jobs == now.terminal == count and now.pending_images == 0

        wait_until(
            settled,
            timeout=timeout,
            interval=0.5,
            what=f"{count} jobs settled",
            details=lambda: f"ledger: {self.status_counts()}\n{self.tail()}",
        )
        return self.jobs()

    def stored_bytes(self, image: ImageView) -> bytes:
        assert image.state == "stored"
        assert image.storage_key
        return self.store.read(image.storage_key)

    # The simulator, as RunPod sees it.

    def runpod_status(self, runpod_job_id: str) -> dict[str, Any]:
        """The simulator's status object of one of its jobs (clear injected faults first)."""
        response = self._sim_http.get(f"status/{runpod_job_id}")
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body
