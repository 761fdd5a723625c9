"""Prometheus metrics of one Podrelay process (prometheus-client's default registry).

Metrics live in the memory of the process that records them: `/metrics` on an API process
shows that process's HTTP traffic, its RunPod calls and the webhook deliveries it made.
Celery workers are separate processes and are not scraped here; with several API processes
(`uvicorn --workers N`) each keeps its own counters. The job counts (`podrelay_jobs`,
`podrelay_queue_depth`) and the per-route and per-endpoint gauges (`app.api.route_metrics`) are
the exception: they are read from the shared ledger at scrape time (`app.api.ops`), so they
describe the whole system whichever process answers.

Labels only ever hold bounded values (route templates, operation names, error kinds); never a
raw path, a job id, an API key or a webhook token.
"""

import re
from typing import Final

from prometheus_client import Counter, Histogram, disable_created_metrics

from app.runpod.errors import RunPodError

# No `*_created` series: they double the exposition and no dashboard of ours reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]

LATENCY_BUCKETS: Final = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip

HTTP_REQUESTS = Counter(
    "podrelay_http_requests",
    "HTTP requests answered by the API, by route template, method and status.",
    ["route", "method", "status"],
)
HTTP_LATENCY = Histogram(
    "podrelay_http_request_duration_seconds",
    "Time from receiving a request to the end of its response, by route template and method.",
    ["route", "method"],
    buckets=LATENCY_BUCKETS,
)

# The labelled series by (route, method, status): finite, as routes are templates.
_HTTP_SERIES: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}


def observe_http_request(route: str, method: str, status: int, seconds: float) -> None:
    """Count one answered request and its duration; `route` is a template, never a raw path."""
    series = _HTTP_SERIES.get((route, method, status))
    if series is None:
        series = _HTTP_SERIES[route, method, status] = (
            HTTP_REQUESTS.labels(route=route, method=method, status=str(status)),
            HTTP_LATENCY.labels(route=route, method=method),
        )
    series[0].inc()
    series[1].observe(seconds)


RUNPOD_LATENCY = Histogram(
    "podrelay_runpod_request_duration_seconds",
    "Duration of one HTTP exchange with RunPod (each retry counts), by operation.",
    ["operation"],
    buckets=LATENCY_BUCKETS,
)
RUNPOD_ERRORS = Counter(
    "podrelay_runpod_errors",
    "Failed HTTP exchanges with RunPod (each retry counts), by operation and error kind.",
    ["operation", "error"],
)

# Client webhook outcomes: "delivered" (2xx), "retrying" (an attempt failed, another is
# scheduled), "failed" (attempts exhausted or the URL refused). Increment with
# `WEBHOOK_DELIVERIES.labels(outcome="delivered").inc()`.
WEBHOOK_OUTCOMES: Final = ("delivered", "retrying", "failed")
WEBHOOK_DELIVERIES = Counter(
    "podrelay_webhook_deliveries",
    "Delivery attempts of signed webhooks to callers' URLs, by outcome.",
    ["outcome"],
)
for _outcome in WEBHOOK_OUTCOMES:
    WEBHOOK_DELIVERIES.labels(outcome=_outcome)  # exported at 0 before the first delivery

_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


def error_kind(error: RunPodError) -> str:
    """A bounded label for an error: `RateLimitError` -> `rate_limit`."""
    name = type(error).__name__.removeprefix("RunPod").removesuffix("Error") or "other"
    return _CAMEL.sub("_", name).lower()


def observe_runpod_attempt(operation: str, seconds: float, error: RunPodError | None) -> None:
    """The RunPod client's attempt hook (`RunPodClient.on_attempt`)."""
    RUNPOD_LATENCY.labels(operation=operation).observe(seconds)
    if error is not None:
        RUNPOD_ERRORS.labels(operation=operation, error=error_kind(error)).inc()
