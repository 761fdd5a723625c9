"""OpenTelemetry tracing (`app.core.tracing`): a job's trace id leads to one trace with the
API's request, the worker's submission and its POST /run, RunPod's webhook and the image
download.

Two ways to collect spans, each where it is the real thing:
- Across processes, an in-memory exporter cannot see the API's and the worker's spans, so the
  first test runs the real stack (uvicorn, a Celery worker with beat, the simulator sending
  real webhooks) with OTEL_EXPORTER_OTLP_ENDPOINT pointing at an OTLP/HTTP collector stand-in
  on 127.0.0.1 (`tests.stack.otlp`): the configuration, the exporter, the Celery message's
  propagation and the webhook are the production ones.
- In one process, the API runs in-process and the test drives the worker's part (the
  dispatcher's submission, the tracker's polls and downloads) with opentelemetry-sdk's
  `InMemorySpanExporter`: the polling path, a caller's own trace continued, and the
  instrumentations' spans (SQLAlchemy's too) on both ledgers.
"""

from collections.abc import Callable, Iterator

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import select

from app.core.tracing import API_SERVICE, WORKER_SERVICE, redact, start_tracing, stop_tracing
from app.jobs.models import Job, Submission
from app.simulator.server import SimulatorServer
from tests.stack.factory import StackFactory
from tests.stack.http_api import API, complete
from tests.stack.inprocess_api import ApiFactory
from tests.stack.otlp import ExportedSpan, exported_spans
from tests.stack.receiver import serve_receiver
from tests.stack.waiting import wait_until

GENERATE = "POST /api/v1/runpod/generate"
STORE_IMAGES_TASK = "run/app.tasks.runpod_tasks.store_images_task"
TRACK_JOBS_TASK = "run/app.tasks.runpod_tasks.track_jobs"
SMALL = {"width": 256, "height": 256}


def url_of(attributes: dict[str, str]) -> str:
    """An HTTP client span's URL, in the old semantic conventions or the new."""
    return attributes.get("url.full") or attributes.get("http.url") or ""


def test_one_trace_from_the_request_through_runpod_and_its_webhook_to_the_image(
    stacks: StackFactory, simulator: SimulatorServer
) -> None:
    with serve_receiver() as collector:
        stack = stacks.build(
            ledger="sqlite",
            broker="embedded",
            webhooks=True,
            simulator=simulator,
            allow_anonymous=True,
            otel_exporter_otlp_endpoint=collector.base_url,
            otel_bsp_schedule_delay=50,  # ms: spans reach the collector soon after they end
        )
        api = stack.start_api()
        stack.start_worker()
        accepted = httpx.post(f"{api}{API}/generate", json={"prompt": "a fox", **SMALL})
        assert accepted.status_code == 202, accepted.text
        job_id, trace_id = accepted.json()["id"], accepted.json()["trace_id"]
        [job] = stack.wait_settled(1, timeout=60)
        assert (job.status, [image.state for image in job.images]) == ("completed", ["stored"])
        status = httpx.get(f"{api}{API}/status/{job_id}").json()
        assert status["trace_id"] == trace_id

        wanted = {
            (API_SERVICE, GENERATE),
            (WORKER_SERVICE, "podrelay.submit"),
            (API_SERVICE, "podrelay.webhook"),
            (WORKER_SERVICE, "podrelay.store_image"),
        }

        def in_trace() -> set[tuple[str, str]]:
            return {
                (s.service, s.name) for s in exported_spans(collector) if s.trace_id == trace_id
            }

        wait_until(
            lambda: wanted <= in_trace() and _task_span(exported_spans(collector)) is not None,
            timeout=30,
            what="the job's spans at the collector",
            details=lambda: f"{sorted(in_trace())}\n{stack.tail()}",
        )
        spans = exported_spans(collector)
        with stack.db.session() as session:
            tokens = list(session.scalars(select(Submission.token)))

    by_id = {span.span_id: span for span in spans}
    trace = [span for span in spans if span.trace_id == trace_id]

    def only(service: str, name: str) -> ExportedSpan:
        [span] = [s for s in trace if (s.service, s.name) == (service, name)]
        return span

    def calls_under(parent: ExportedSpan) -> list[str]:
        """The URLs of the HTTP calls made in `parent` (not its database statements)."""
        children = [s for s in trace if s.parent_id == parent.span_id]
        return [url_of(s.attributes) for s in children if url_of(s.attributes)]

    request = only(API_SERVICE, GENERATE)
    assert (request.kind, request.parent_id) == ("SERVER", "")
    submit = only(WORKER_SERVICE, "podrelay.submit")
    assert submit.attributes["podrelay.job_id"] == job_id
    [run_call] = calls_under(submit)
    assert run_call.endswith("/run"), run_call
    # RunPod's webhook starts a trace of its own (it sends no context); the job's webhook span
    # is in the job's trace and links to a span of that request.
    webhook = only(API_SERVICE, "podrelay.webhook")
    [(_, linked)] = webhook.links
    receipt = by_id[linked]
    while receipt.parent_id:
        receipt = by_id[receipt.parent_id]
    assert (receipt.name, receipt.kind) == ("POST /webhooks/runpod/{token}", "SERVER")
    assert receipt.trace_id != trace_id
    # The Celery task the webhook sent, or a tracker tick, downloads the image (both, when
    # they meet): each download is in the job's trace.
    stores = [s for s in trace if (s.service, s.name) == (WORKER_SERVICE, "podrelay.store_image")]
    assert stores
    for store in stores:
        assert calls_under(store) == [job.images[0].source_url]
    # The webhook hands the download to a worker by a Celery message, which carries the
    # webhook request's context through the broker.
    task = _task_span(spans)
    assert task is not None
    publish = by_id[task.parent_id]
    assert (publish.service, publish.kind, publish.trace_id) == (
        API_SERVICE,
        "PRODUCER",
        receipt.trace_id,
    )
    # Background work (beat's tracker ticks, idle dispatcher rounds) starts no trace: every
    # trace starts with a request to the API.
    assert not [s for s in spans if s.name == TRACK_JOBS_TASK]
    assert {s.kind for s in spans if not s.parent_id} == {"SERVER"}
    # The webhook's secret is in its URL, never in a span.
    [token] = tokens
    leaks = [s for s in spans if any(token in value for value in s.attributes.values())]
    assert leaks == []
    assert receipt.attributes["url.path"] == "/webhooks/runpod/***"


def _task_span(spans: list[ExportedSpan]) -> ExportedSpan | None:
    """The worker's span of the `store_images_task` the webhook sent."""
    found = [s for s in spans if s.name == STORE_IMAGES_TASK and s.service == WORKER_SERVICE]
    return found[0] if found else None


# In one process, with the in-memory exporter.


FinishedSpans = Callable[[], tuple[ReadableSpan, ...]]


@pytest.fixture
def finished_spans() -> Iterator[FinishedSpans]:
    """Tracing on in this process for the test; returns the spans ended so far."""
    exporter = InMemorySpanExporter()
    provider = start_tracing(exporter, service="podrelay-test")

    def finished() -> tuple[ReadableSpan, ...]:
        provider.force_flush()
        return exporter.get_finished_spans()

    try:
        yield finished
    finally:
        stop_tracing()


# A caller's own trace, sent as `traceparent` with its request.
CALLER_TRACE = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN = "b7ad6b7169203331"


async def test_the_callers_trace_follows_the_job_through_polls_and_downloads(
    api_factory: ApiFactory, ledger_env: dict[str, str], finished_spans: FinishedSpans
) -> None:
    async with api_factory(**ledger_env) as api:
        caller = {"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"}
        accepted = await api.client.post(
            f"{API}/generate", json={"prompt": "a fox", **SMALL}, headers=caller
        )
        assert accepted.json()["trace_id"] == CALLER_TRACE
        body = await complete(api, accepted.json()["id"])
    assert body["trace_id"] == CALLER_TRACE
    trace = [s for s in finished_spans() if f"{s.context.trace_id:032x}" == CALLER_TRACE]
    names = [span.name for span in trace]
    request = next(s for s in trace if s.name == GENERATE)
    assert request.parent is not None
    assert f"{request.parent.span_id:016x}" == CALLER_SPAN
    # The ledger's statements of the request that recorded the job, within its span.
    statements = [s for s in trace if s.name.startswith("INSERT") and _under(s, request, trace)]
    assert statements, names
    for name, call in (("podrelay.submit", "/run"), ("podrelay.store_image", ".png")):
        span = next(s for s in trace if s.name == name)
        assert any(
            url_of({k: str(v) for k, v in (child.attributes or {}).items()}).endswith(call)
            for child in trace
            if child.parent is not None and child.parent.span_id == span.context.span_id
        ), (name, names)
    polls = [s for s in trace if s.name == "podrelay.poll"]
    assert "COMPLETED" in [(s.attributes or {}).get("podrelay.runpod_status") for s in polls]


def _under(span: ReadableSpan, ancestor: ReadableSpan, trace: list[ReadableSpan]) -> bool:
    by_id = {s.context.span_id: s for s in trace}
    while span.parent is not None and span.parent.span_id in by_id:
        span = by_id[span.parent.span_id]
        if span is ancestor:
            return True
    return False


async def test_with_tracing_off_a_job_has_no_trace(api_factory: ApiFactory) -> None:
    async with api_factory() as api:
        accepted = await api.client.post(f"{API}/generate", json={"prompt": "a fox"})
        assert accepted.json()["trace_id"] is None
        with api.engine.db.session() as session:
            job = session.get_one(Job, accepted.json()["id"])
            assert job.traceparent is None


def test_span_attributes_lose_webhook_secrets_and_signatures() -> None:
    assert redact("/webhooks/runpod/AbC-123_xyz") == "/webhooks/runpod/***"
    signed = "https://b.s3.amazonaws.com/k.png?X-Amz-Credential=AKIA%2F1&X-Amz-Signature=ab12&x=1"
    assert (
        redact(signed)
        == "https://b.s3.amazonaws.com/k.png?X-Amz-Credential=***&X-Amz-Signature=***&x=1"
    )
    assert redact("/api/v1/runpod/media/img_1?expires=17&sig=Zm9v") == (
        "/api/v1/runpod/media/img_1?expires=17&sig=***"
    )
    assert redact("/api/v1/runpod/images/img_1?w=256&format=webp") == (
        "/api/v1/runpod/images/img_1?w=256&format=webp"
    )
