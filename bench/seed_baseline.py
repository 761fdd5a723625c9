"""The seed's design, kept as the in-flight benchmark's baseline.

`celery -A bench.seed_baseline worker --pool prefork --concurrency 2`: one task per job POSTs
/run and then blocks its worker process, polling /status every 5 s with a sync httpx client
until the job is final, as the seed's task did. Children read `SEED_BASELINE_BROKER` (a Redis
URL, or "" for a file-system broker under `SEED_BASELINE_DIR`) and `SEED_BASELINE_RUNPOD`
(`{base}/{endpoint_id}`) from the environment.
"""

import os
import time
from pathlib import Path

import httpx
from celery import Celery

from app.services.generation_defaults import GenerationParams, build_runpod_input

TASK = "bench.seed_baseline.generate"
POLL_S = 5.0
MAX_WAIT_S = 600.0
_FINAL = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"})
_SMALL = GenerationParams(width=256, height=256)


def create_app(broker: str, folder: Path) -> Celery:
    """The seed-style Celery app; `broker` "" means a file-system broker under `folder`."""
    application = Celery("seed_baseline")
    if broker:
        application.conf.update(broker_url=broker, result_backend=broker)
    else:
        queue = folder / "broker"
        queue.mkdir(parents=True, exist_ok=True)
        application.conf.update(
            broker_url="filesystem://",
            result_backend=f"db+sqlite:///{folder / 'results.sqlite'}",
            broker_transport_options={"data_folder_in": str(queue), "data_folder_out": str(queue)},
        )
    application.conf.update(task_serializer="json", accept_content=["json"])
    return application


app = create_app(
    os.environ.get("SEED_BASELINE_BROKER", ""), Path(os.environ.get("SEED_BASELINE_DIR", "."))
)


@app.task(name=TASK)
def generate(prompt: str) -> dict[str, str]:
    """Submit one job and hold this worker process until RunPod says it is final."""
    runpod = os.environ["SEED_BASELINE_RUNPOD"]
    headers = {"Authorization": "Bearer bench-key"}
    with httpx.Client(base_url=f"{runpod}/", headers=headers, timeout=30) as client:
        response = client.post("run", json={"input": build_runpod_input(prompt, None, _SMALL)})
        response.raise_for_status()
        job_id = str(response.json()["id"])
        status = "IN_QUEUE"
        deadline = time.monotonic() + MAX_WAIT_S
        while status not in _FINAL and time.monotonic() < deadline:
            time.sleep(POLL_S)
            reading = client.get(f"status/{job_id}")
            reading.raise_for_status()
            status = str(reading.json()["status"])
    return {"id": job_id, "status": status}
