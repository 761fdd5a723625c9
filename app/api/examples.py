"""Example values for the OpenAPI document (Swagger UI at `/docs`, ReDoc at `/redoc`).

Plain JSON values in the shapes the API really answers: ids as `new_id` makes them, links as
`app.api.views` builds them, event streams as `app.api.endpoints.history` writes them.
tests/api/test_openapi_examples.py validates each one against its model (and the stream
against a live one), so an example cannot drift from what it illustrates.
"""

from typing import Any

Json = dict[str, Any]

# `app.api.views.API_PREFIX`; views imports the schemas that import this module, hence a copy
# (the test holds the two equal).
API = "/api/v1/runpod"

JOB_ID = "job_3f9a6c1e8b2d47a05c6e1f28"
BATCH_ID = "batch_8d1e4b7a2c9f60e3b5a1d7c4"
BATCH_JOB_IDS = ("job_a41c7e9b03d25f8e6b1c4d70", "job_c2e85f1a7b9d3064e8a1f5b2")
IMAGE_IDS = ("img_5b2e9c7a1f3d8e604a2c9b1e", "img_0e7d4a9c2b8f51e63d7a0c94")
PROMPT = "a lighthouse at dusk, oil painting"
ENDPOINT_ID = "sdxl-a1b2c3d4e5"
WEBHOOK_URL = "https://example.com/hooks/podrelay"
# With tracing on, a job is in the trace of the request that asked for it: a batch's jobs share one.
JOB_TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
BATCH_TRACE_ID = "0af7651916cd43dd8448eb211c80319c"

GENERATE_REQUEST: Json = {"prompt": "beautiful anime girl"}
BATCH_REQUEST: Json = {"prompts": ["a red fox", "a lighthouse at dusk"]}

PARAMS: Json = {
    "width": 1024,
    "height": 1024,
    "num_inference_steps": 25,
    "guidance_scale": 7.5,
    "scheduler": "DDIM",
    "seed": 1234,
    "num_images": 1,
    "return_type": "url",
    "add_default_prompts": True,
}


def _timings(**changes: Any) -> Json:
    return {
        "created_at": "2026-03-14T09:26:53.118204Z",
        "submitted_at": None,
        "started_at": None,
        "finished_at": None,
        "deadline_at": "2026-03-14T09:31:53.118204Z",
        "delay_ms": None,
        "execution_ms": None,
        **changes,
    }


def job(job_id: str, prompt: str, **changes: Any) -> Json:
    """A job as `POST /generate` answers it (accepted, not yet at RunPod), with `changes`."""
    return {
        "id": job_id,
        "object": "job",
        "status": "pending",
        "batch_id": None,
        "prompt": prompt,
        "negative_prompt": None,
        "params": PARAMS,
        "progress": None,
        "queue_position": None,
        "queue": None,
        "route": "default",
        "endpoint": None,
        "priority": "normal",
        "attempts": 0,
        "error": None,
        "timings": _timings(),
        "cost": {"gpu_seconds": None, "estimated_usd": None},
        "images": [],
        "webhook_url": None,
        "webhook_deliveries": [],
        "links": {
            "status": f"{API}/status/{job_id}",
            "events": f"{API}/jobs/{job_id}/events",
            "cancel": f"{API}/cancel/{job_id}",
        },
        "replayed": False,
        "trace_id": JOB_TRACE_ID,
        **changes,
    }


_EXAMPLE_SIG = "0Jx3vQ9bW1kTt2yS8mFzq4LrPd7aHcN5eUoG6iVbXkE"


def image(image_id: str, seed: int) -> Json:
    return {
        "id": image_id,
        "url": f"{API}/images/{image_id}",
        # Signed for one hour after the job was read (MEDIA_URL_TTL); no API key needed.
        "signed_url": f"{API}/media/{image_id}?expires=1773484080&sig={_EXAMPLE_SIG}",
        "signed_url_expires_at": "2026-03-14T10:28:00Z",
        "state": "stored",
        "width": 1024,
        "height": 1024,
        "mime_type": "image/png",
        "size_bytes": 1482337,
        "sha256": "799e8df321ca37bf9adf4b9fc4a7237979e721daef0e1e969d57fda7d8570eda",
        "seed": seed,
    }


_FINISHED = _timings(
    submitted_at="2026-03-14T09:26:53.402871Z",
    started_at="2026-03-14T09:26:55.716530Z",
    finished_at="2026-03-14T09:27:02.941077Z",
    delay_ms=2298,
    execution_ms=7224,
)
_COST = {"gpu_seconds": 7.224, "estimated_usd": 0.003179}

DELIVERY: Json = {
    "id": "msg_9c41e7a25b8d03f6e1a4c7b2",
    "event": "job.completed",
    "state": "delivered",
    "attempts": 1,
    "last_status_code": 200,
    "last_error": None,
    "next_attempt_at": None,
    "created_at": "2026-03-14T09:27:02.944310Z",
    "delivered_at": "2026-03-14T09:27:03.187455Z",
    "attempt_log": [
        {"at": "2026-03-14T09:27:03.061902Z", "status_code": 200, "error": None, "duration_ms": 125}
    ],
}

PENDING_JOB = job(JOB_ID, PROMPT, webhook_url=WEBHOOK_URL)
COMPLETED_JOB = job(
    JOB_ID,
    PROMPT,
    status="completed",
    attempts=1,
    endpoint=ENDPOINT_ID,
    timings=_FINISHED,
    cost=_COST,
    images=[image(IMAGE_IDS[0], seed=1234)],
    webhook_url=WEBHOOK_URL,
    webhook_deliveries=[DELIVERY],
)
CANCELLED_JOB = job(
    JOB_ID,
    PROMPT,
    status="cancelled",
    attempts=1,
    endpoint=ENDPOINT_ID,
    error={"code": "cancelled", "message": "cancelled by the user"},
    timings=_timings(
        submitted_at="2026-03-14T09:26:53.402871Z",
        finished_at="2026-03-14T09:26:58.530194Z",
    ),
    webhook_url=WEBHOOK_URL,
)

_BATCH_PARAMS = {**PARAMS, "seed": None}
BATCH_JOBS = (
    job(
        BATCH_JOB_IDS[0],
        "a red fox",
        batch_id=BATCH_ID,
        params=_BATCH_PARAMS,
        trace_id=BATCH_TRACE_ID,
        status="completed",
        attempts=1,
        endpoint=ENDPOINT_ID,
        timings=_FINISHED,
        cost=_COST,
        images=[image(IMAGE_IDS[1], seed=3141592653)],
    ),
    job(
        BATCH_JOB_IDS[1],
        "a lighthouse at dusk",
        batch_id=BATCH_ID,
        params=_BATCH_PARAMS,
        trace_id=BATCH_TRACE_ID,
        status="running",
        attempts=1,
        endpoint=ENDPOINT_ID,
        progress={"progress": 0.48, "step": 12, "total_steps": 25},
        timings=_timings(
            submitted_at="2026-03-14T09:26:53.405112Z",
            started_at="2026-03-14T09:26:56.020348Z",
            delay_ms=2615,
        ),
    ),
)


def batch(jobs: list[Json] | tuple[Json, ...]) -> Json:
    counts: dict[str, int] = {}
    for item in jobs:
        counts[item["status"]] = counts.get(item["status"], 0) + 1
    terminal = {"completed", "failed", "cancelled", "timed_out"}
    return {
        "id": BATCH_ID,
        "object": "batch",
        "created_at": "2026-03-14T09:26:53.110562Z",
        "size": len(jobs),
        "counts": counts,
        "done": all(item["status"] in terminal for item in jobs),
        "jobs": list(jobs),
        "webhook_deliveries": [],
        "replayed": False,
    }


ACCEPTED_BATCH = batch(
    [
        job(item["id"], item["prompt"], batch_id=BATCH_ID, params=_BATCH_PARAMS)
        | {"trace_id": BATCH_TRACE_ID}
        for item in BATCH_JOBS
    ]
)
RUNNING_BATCH = batch(BATCH_JOBS)

JOB_PAGE: Json = {"items": [BATCH_JOBS[1], COMPLETED_JOB], "next_cursor": JOB_ID}

_HEALTH: Json = {
    "jobs": {"completed": 1824, "failed": 3, "inProgress": 2, "inQueue": 5, "retried": 0},
    "workers": {
        "idle": 0,
        "initializing": 1,
        "ready": 0,
        "running": 2,
        "throttled": 0,
        "unhealthy": 0,
    },
}
CONNECTION_TEST: Json = {
    "ok": True,
    "key_accepted": True,
    "latency_ms": 184.3,
    **_HEALTH,
    "error": None,
}
_SDXL_DEFAULTS: Json = {
    "width": 1024,
    "height": 1024,
    "num_inference_steps": 25,
    "guidance_scale": 7.5,
    "num_images": 1,
}
_NEVER_CHECKED: Json = {
    "max_in_flight": None,
    "workers": dict.fromkeys(
        ("idle", "ready", "running", "initializing", "throttled", "unhealthy")
    ),
    "runpod_jobs": {"in_queue": None, "in_progress": None},
    "queue_delay_p50_ms": None,
    "execution_p50_ms": None,
    "circuit": "closed",
    "circuit_reason": None,
    "circuit_since": None,
    "retry_at": None,
    "trips": 0,
    "checked_at": None,
    "error": None,
}
MODELS: Json = {
    "models": [
        {
            "name": "sdxl",
            "default": True,
            "kind": "sdxl",
            "price_per_second": 0.00044,
            "max_queue_delay_s": 60.0,
            "defaults": _SDXL_DEFAULTS,
            "bounds": {"max_width": 1536, "max_height": 1536, "max_steps": 60, "max_images": 4},
            "fallbacks": ["flux"],
            "pending_jobs": 1,
            "waiting_jobs": 5,
            "endpoints": [
                {
                    "id": ENDPOINT_ID,
                    "weight": 2.0,
                    "max_in_flight": 6,
                    "workers": _HEALTH["workers"],
                    "runpod_jobs": {"in_queue": 4, "in_progress": 2},
                    "queue_delay_p50_ms": 840,
                    "execution_p50_ms": 6380,
                    "circuit": "closed",
                    "circuit_reason": None,
                    "circuit_since": None,
                    "retry_at": None,
                    "trips": 0,
                    "checked_at": "2026-03-14T09:27:01.204518Z",
                    "error": None,
                    "queued_jobs": 4,
                    "running_jobs": 2,
                },
                {
                    "id": "sdxl-b7c8d9e0f1",
                    "weight": 1.0,
                    "max_in_flight": 2,
                    "workers": {
                        **_HEALTH["workers"],
                        "initializing": 0,
                        "running": 0,
                        "throttled": 3,
                    },
                    "runpod_jobs": {"in_queue": 0, "in_progress": 0},
                    "queue_delay_p50_ms": None,
                    "execution_p50_ms": None,
                    "circuit": "open",
                    "circuit_reason": "no worker can run (3 throttled) while jobs wait",
                    "circuit_since": "2026-03-14T09:26:40.118302Z",
                    "retry_at": "2026-03-14T09:27:11.902114Z",
                    "trips": 1,
                    "checked_at": "2026-03-14T09:27:00.871940Z",
                    "error": None,
                    "queued_jobs": 0,
                    "running_jobs": 0,
                },
            ],
        },
        {
            "name": "flux",
            "default": False,
            "kind": "flux",
            "price_per_second": 0.00076,
            "max_queue_delay_s": 120.0,
            "defaults": {**_SDXL_DEFAULTS, "num_inference_steps": 28, "guidance_scale": 3.5},
            "bounds": {"max_width": 2048, "max_height": 2048, "max_steps": 50, "max_images": 1},
            "fallbacks": [],
            "pending_jobs": 0,
            "waiting_jobs": 0,
            "endpoints": [
                {
                    "id": "flux-0a9b8c7d6e",
                    "weight": 1.0,
                    **_NEVER_CHECKED,
                    "queued_jobs": 0,
                    "running_jobs": 0,
                },
            ],
        },
    ]
}
QUEUE_STATS: Json = {
    "jobs_by_status": {
        "pending": 1,
        "queued": 4,
        "running": 2,
        "completed": 1824,
        "failed": 3,
        "cancelled": 12,
        "timed_out": 1,
    },
    "queues": {"waiting": 5, "running": 2},
    "runpod_health": _HEALTH,
    "runpod_error": None,
    "stall_reason": None,
    "routes": MODELS["models"],
}
GPU_PRICE = 0.00044


def _day(day: str, jobs: int, completed: int, images: int, gpu_seconds: float) -> Json:
    return {
        "day": day,
        "jobs": jobs,
        "completed": completed,
        "images": images,
        "gpu_seconds": gpu_seconds,
        "estimated_usd": round(gpu_seconds * GPU_PRICE, 6),
    }


USAGE: Json = {
    "days": [_day("2026-03-13", 42, 40, 40, 301.562), _day("2026-03-14", 7, 6, 9, 58.07)],
    "gpu_price_per_second": GPU_PRICE,
    "job_estimate_usd": 0.0044,
    "budgets": [
        {
            "period": "daily",
            "budget_usd": 5.0,
            "spent_usd": 0.025551,
            "remaining_usd": 4.974449,
            "resets_at": "2026-03-15T00:00:00Z",
        }
    ],
}
KEY_ID = "key_4be1a09c7d23f5e8"
TOKEN_REQUEST: Json = {
    "user": "user-42",
    "scopes": ["jobs:create", "jobs:read", "images:read"],
    "ttl_s": 900,
    "origins": ["https://app.example.com"],
    "limits": {"daily_budget_usd": 2.0, "creates_per_minute": 30},
}
TOKEN: Json = {
    "token": "prs_eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1c2VyLTQyIn0.c2lnbmF0dXJl",
    "token_type": "Bearer",
    "expires_at": "2026-03-14T10:15:00Z",
    "expires_in": 900,
    "owner": f"{KEY_ID}/user-42",
    "scopes": ["images:read", "jobs:create", "jobs:read"],
    "origins": ["https://app.example.com"],
}
KEY_REQUEST: Json = {
    "name": "storefront",
    "scopes": ["jobs:create", "jobs:read", "images:read"],
    "origins": ["https://app.example.com"],
    "expires": "30d",
    "daily_budget_usd": 20.0,
}
KEY: Json = {
    "id": KEY_ID,
    "name": "storefront",
    "prefix": "prk_Xq7b2L",
    "scopes": ["images:read", "jobs:create", "jobs:read"],
    "origins": ["https://app.example.com"],
    "created_at": "2026-03-14T10:00:00Z",
    "expires_at": "2026-04-13T10:00:00Z",
    "revoked_at": None,
    "max_priority": None,
    "weight": None,
    "requests_per_minute": None,
    "creates_per_minute": None,
    "daily_budget_usd": 20.0,
    "monthly_budget_usd": None,
    "webhook_url": None,
}
CREATED_KEY: Json = {
    **KEY,
    "api_key": "prk_Xq7b2LrT0mV4yWc8pN1sJ6dK9hG3fA5eZ2uQ7iO0xB4",
    "webhook_secret": "whsec_MfKQ9r8GKYqBqAlsTPAYt5TkL9rsCE0xkcpVTz/4Ng8=",
}
KEY_LIST: Json = {"items": [KEY]}
WEBHOOK_RECEIPT: Json = {"received": True, "changed": True}
HEALTHZ: Json = {"status": "ok"}
READY: Json = {
    "status": "ready",
    "checks": {
        "database": {"ok": True},
        "broker": {"ok": True, "detail": "redis"},
        "runpod": {"ok": True},
    },
}
NOT_READY: Json = {
    "status": "not_ready",
    "checks": {
        "database": {"ok": True},
        "broker": {"ok": True, "detail": "redis"},
        "runpod": {"ok": False, "detail": "RunPod refused the API key: unauthorized"},
    },
}


def _problem(status: int, title: str, code: str, detail: str, **extra: Any) -> Json:
    """An error answer as `app.api.errors.problem_response` sends it (nulls left out)."""
    base = {"type": "about:blank", "title": title, "status": status, "code": code}
    return base | {"detail": detail, "retryable": False, **extra}


_TOO_SHORT = "String should have at least 1 character"
# `app.api.errors.UNAVAILABLE`'s answer while PostgreSQL is down (`broker_unavailable` alike).
DATABASE_UNAVAILABLE = _problem(
    503,
    "Database unavailable",
    "database_unavailable",
    "the job ledger's database does not answer; retry later",
    retryable=True,
    retry_after=5.0,
)
PROBLEMS: list[Json] = [
    _problem(404, "Not found", "job_not_found", "no such job"),
    _problem(
        429,
        "Too many requests",
        "rate_limited",
        "over 60 requests per minute; retry in 12 s",
        retryable=True,
        retry_after=12.0,
    ),
    _problem(
        422,
        "Invalid request",
        "validation_error",
        f"prompt: {_TOO_SHORT}",
        errors=[{"loc": ["body", "prompt"], "msg": _TOO_SHORT, "type": "string_too_short"}],
    ),
    DATABASE_UNAVAILABLE,
]

# What RunPod POSTs to the job's webhook URL: its job object plus `input` and `webhook` echoes
# (runpod-contract.md section 2), here from a worker-sdxl endpoint.
_RUNPOD_IMAGE = "https://bucket.s3.amazonaws.com/6b3f2c1e/output_0.png"
RUNPOD_WEBHOOK: Json = {
    "id": "6b3f2c1e-9d8a-4e57-b0c4-2f1e7a9d3c58-u1",
    "status": "COMPLETED",
    "delayTime": 2298,
    "executionTime": 7224,
    "workerId": "p8k2x7w9q4m1zt",
    "output": {"images": [_RUNPOD_IMAGE], "image_url": _RUNPOD_IMAGE, "seed": 1234},
    "input": {
        "prompt": f"{PROMPT}, masterpiece, best quality, highly detailed, sharp focus",
        "negative_prompt": (
            "lowres, worst quality, low quality, blurry, jpeg artifacts, watermark, signature, "
            "text, bad anatomy, bad hands, extra fingers, deformed"
        ),
        **{key: value for key, value in PARAMS.items() if key != "add_default_prompts"},
    },
    "webhook": "https://podrelay.example.com/webhooks/runpod/tN3q8Xy0bV4kR7mW2cF9hL5sD1gJ6pZa",
}

# `GET /jobs/{id}/events` of COMPLETED_JOB: a `retry:` line, then one frame per ledger event
# (`id`, `event` = its kind, `data` = the event as JSON), a comment as heartbeat in quiet spells.
EVENT_STREAM = """retry: 2000

event: created
data: {"id":1,"kind":"created","status":"pending","message":null,"at":"2026-03-14T09:26:53.131870Z","images":null}
id: 1

event: status
data: {"id":2,"kind":"status","status":"queued","message":null,"at":"2026-03-14T09:26:53.404455Z","images":null}
id: 2

event: status
data: {"id":3,"kind":"status","status":"running","message":null,"at":"2026-03-14T09:26:55.718090Z","images":null}
id: 3

: ping

event: status
data: {"id":4,"kind":"status","status":"completed","message":null,"at":"2026-03-14T09:27:02.942731Z","images":[{"id":"img_5b2e9c7a1f3d8e604a2c9b1e","url":"/api/v1/runpod/images/img_5b2e9c7a1f3d8e604a2c9b1e","signed_url":"/api/v1/runpod/media/img_5b2e9c7a1f3d8e604a2c9b1e?expires=1773484080&sig=0Jx3vQ9bW1kTt2yS8mFzq4LrPd7aHcN5eUoG6iVbXkE","signed_url_expires_at":"2026-03-14T10:28:00Z","state":"stored"}]}
id: 4

"""  # noqa: E501 - one frame per line, as sent

# An excerpt of `GET /metrics` (Prometheus text format); the full answer has more series.
METRICS = """# HELP podrelay_http_requests_total HTTP requests answered by the API, by route template, method and status.
# TYPE podrelay_http_requests_total counter
podrelay_http_requests_total{method="POST",route="/api/v1/runpod/generate",status="202"} 49.0
podrelay_http_requests_total{method="GET",route="/api/v1/runpod/status/{task_id}",status="200"} 318.0
# HELP podrelay_jobs Jobs in the ledger, by status.
# TYPE podrelay_jobs gauge
podrelay_jobs{status="pending"} 1.0
podrelay_jobs{status="queued"} 4.0
podrelay_jobs{status="running"} 2.0
podrelay_jobs{status="completed"} 1824.0
# HELP podrelay_queue_depth Jobs not yet running: pending (not accepted by RunPod yet) plus queued at RunPod.
# TYPE podrelay_queue_depth gauge
podrelay_queue_depth 5.0
# HELP podrelay_ledger_up 1 when the job ledger answered the scrape.
# TYPE podrelay_ledger_up gauge
podrelay_ledger_up 1.0
"""  # noqa: E501 - Prometheus lines as served
