"""The Celery application: `celery -A app.celery_app worker`.

Broker: `REDIS_URL`, or with none set an embedded broker that needs no server (kombu's
file-system transport under DATA_DIR, polled every 0.1 s). Queues are declared here and only
here; tasks never name a queue at the call site.
"""

from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from celery import Celery
from kombu.entity import Queue

from app.core import embedded_broker, redis_broker
from app.core.config import Settings, settings_or_exit

RESULT_TTL_S = 3600
# Kept far above every countdown we use, so a delayed message is never redelivered early.
VISIBILITY_TIMEOUT_S = 3600
MEDIA_SWEEP_INTERVAL_S = 3600.0


class TaskQueue(StrEnum):
    HIGH_PRIORITY = "high_priority"  # the seed's queue: generation requests
    TRACKING = "tracking"  # the periodic tracker tick and webhook follow-ups
    MAINTENANCE = "maintenance"  # reconciliation and connection tests


TASKS_MODULE = "app.tasks.runpod_tasks"
TASK_ROUTES = {
    f"{TASKS_MODULE}.generate_image_runpod_task": TaskQueue.HIGH_PRIORITY,
    f"{TASKS_MODULE}.generate_image_batch_task": TaskQueue.HIGH_PRIORITY,
    f"{TASKS_MODULE}.track_jobs": TaskQueue.TRACKING,
    f"{TASKS_MODULE}.store_images_task": TaskQueue.TRACKING,
    f"{TASKS_MODULE}.cancel_runpod_job_task": TaskQueue.TRACKING,
    f"{TASKS_MODULE}.reconcile_jobs": TaskQueue.MAINTENANCE,
    f"{TASKS_MODULE}.test_runpod_connection_task": TaskQueue.MAINTENANCE,
    f"{TASKS_MODULE}.sweep_media": TaskQueue.MAINTENANCE,
}


def broker_config(settings: Settings) -> dict[str, Any]:
    if settings.redis_url:
        config: dict[str, Any] = {
            "broker_url": settings.redis_url,
            "result_backend": settings.redis_url,
            "broker_transport_options": {"visibility_timeout": VISIBILITY_TIMEOUT_S},
        }
        # kombu's own transport can make a worker exit when Redis restarts. Only for redis://:
        # for the other schemes kombu derives more than the transport from the URL (TLS).
        if urlsplit(settings.redis_url).scheme == "redis":
            config["broker_transport"] = redis_broker.TRANSPORT
        return config
    folder = (settings.data_dir / "broker").resolve()
    for name in ("queue", "processed", "control"):
        (folder / name).mkdir(parents=True, exist_ok=True)
    results = (settings.data_dir / "celery-results.sqlite").resolve()
    return {
        "broker_url": "filesystem://",
        # kombu's own file-system transport can hand out a message file before it is written.
        "broker_transport": embedded_broker.TRANSPORT,
        "result_backend": f"db+sqlite:///{results}",
        "broker_transport_options": {
            "data_folder_in": str(folder / "queue"),
            "data_folder_out": str(folder / "queue"),
            "processed_folder": str(folder / "processed"),
            "control_folder": str(folder / "control"),
            "store_processed": False,
            "polling_interval": 0.1,
        },
    }


def create_celery(settings: Settings) -> Celery:
    application = Celery("podrelay", include=[TASKS_MODULE])
    # The embedded beat keeps its schedule here and dies (the worker does not) without it.
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    application.conf.update(
        **broker_config(settings),
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_queues=[Queue(queue.value) for queue in TaskQueue],
        task_default_queue=TaskQueue.HIGH_PRIORITY.value,
        task_routes={name: {"queue": queue.value} for name, queue in TASK_ROUTES.items()},
        worker_prefetch_multiplier=1,
        result_expires=RESULT_TTL_S,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        # loguru already writes to stderr; redirected, every line would be logged twice.
        worker_redirect_stdouts=False,
        beat_schedule_filename=str((settings.data_dir / "celerybeat-schedule").resolve()),
        beat_schedule={
            "track-jobs": {
                "task": f"{TASKS_MODULE}.track_jobs",
                "schedule": settings.poll_sweep_interval,
                "options": {"expires": max(5.0, settings.poll_sweep_interval * 5)},
            },
            "reconcile-jobs": {
                "task": f"{TASKS_MODULE}.reconcile_jobs",
                "schedule": settings.reconcile_interval,
                "options": {"expires": settings.reconcile_interval * 2},
            },
            # MEDIA_RETENTION_DAYS, and objects a store outage kept from being deleted.
            "sweep-media": {
                "task": f"{TASKS_MODULE}.sweep_media",
                "schedule": MEDIA_SWEEP_INTERVAL_S,
                "options": {"expires": MEDIA_SWEEP_INTERVAL_S},
            },
        },
    )
    return application


celery_app = create_celery(settings_or_exit())
app = celery_app
