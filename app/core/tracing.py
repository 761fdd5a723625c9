"""OpenTelemetry tracing: one trace per job, from the request that asked for it to its images.

Off unless OTEL_EXPORTER_OTLP_ENDPOINT is set: then nothing is instrumented, the exporter and
the instrumentations are not even imported, and every function here returns at once. On,
`configure_tracing` (called by `app.main` and, for the workers, `app.tasks.runtime`) sends spans
in batches over OTLP/HTTP and instruments Celery, httpx and SQLAlchemy with OpenTelemetry's
instrumentations; FastAPI traces its requests itself (`api_telemetry`, FastAPI's native
support). The provider is handed to each of them rather than installed globally, so a process
(a test) can switch tracing on and off again (`start_tracing`, `stop_tracing`).

How a job's work stays in one trace. No message goes from the API to the worker that submits a
job (each worker's dispatcher reads the ledger), and RunPod's webhook carries no trace context.
So the context of the request that accepted the job (W3C `traceparent`) is kept on the job's
row (`current_traceparent`, recorded by `app.jobs.admission`), and each later step on that job
runs in a span of its own under it (`job_span`): the worker's POST /run (httpx's span of the
call inside it), the webhook's reading applied in the API, each poll, each image download.
Those steps run in batches for many jobs (a dispatcher round, one webhook transaction, one
Celery task), so a job's span is not the batch's child: it links to the span that was current,
e.g. the webhook's HTTP request, a trace of its own since RunPod sends no context. The Celery
messages that do exist (`store_images_task`, ...) carry their sender's context in their
headers (the Celery instrumentation).

Background work starts no trace: a database query or an HTTP call made outside any span (the
dispatcher's idle rounds, /health checks) and a message sent outside any span (beat's ticks,
and so the tick tasks themselves) are not recorded (`_NoBackgroundTraces`); a job's spans are,
whatever started them.

Span attributes never carry the webhook secret of a RunPod callback URL, nor a signature or
credential in a URL's query (`redact`).
"""

import os
import re
from collections.abc import Coroutine, Iterator, MutableMapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import INVALID_SPAN, Link, SpanKind, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes

from app.core.config import Settings
from app.core.logging import REDACTED, redact_url_secrets

if TYPE_CHECKING:  # the worker image has no FastAPI
    from fastapi.telemetry import TelemetryConfig

    # The module is marked `# type: ignore` as a whole: mypy sees none of its names.
    from opentelemetry.instrumentation.instrumentor import (  # type: ignore[attr-defined]
        BaseInstrumentor,
    )

T = TypeVar("T")

API_SERVICE = "podrelay-api"
WORKER_SERVICE = "podrelay-worker"
# Probes and scrapes, many a minute, would drown the requests worth a trace.
UNTRACED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
JOB_ID_ATTRIBUTE = "podrelay.job_id"

_W3C = TraceContextTextMapPropagator()
# A query parameter whose name says it holds a secret: presigned URLs' signatures and
# credentials, `sig` of our signed image URLs, tokens and keys.
_SECRET_PARAMETER = re.compile(
    r"([?&][^=&#\s]*(?:signature|credential|sig|token|key|secret|password)[^=&#\s]*=)[^&#\s]*",
    re.IGNORECASE,
)


def redact(value: str) -> str:
    """`value` without the webhook secret of a RunPod callback path or a query's secrets."""
    return _SECRET_PARAMETER.sub(rf"\g<1>{REDACTED}", redact_url_secrets(value))


class _RedactSecrets(SpanProcessor):
    """Rewrites the attributes a span starts with (where instrumentations put URLs)."""

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        for key, value in (span.attributes or {}).items():
            if isinstance(value, str) and (clean := redact(value)) != value:
                span.set_attribute(key, clean)


class _NoBackgroundTraces(Sampler):
    """Drops a client or producer span that would start a trace; else asks `sampler` (the
    one OTEL_TRACES_SAMPLER configures, by default: a span is sampled as its parent)."""

    def __init__(self, sampler: Sampler) -> None:
        self._sampler = sampler

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        parent = trace.get_current_span(parent_context).get_span_context()
        if not parent.is_valid and kind in (SpanKind.CLIENT, SpanKind.PRODUCER):
            return SamplingResult(Decision.DROP)
        return self._sampler.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        return f"NoBackgroundTraces{{{self._sampler.get_description()}}}"


@dataclass
class _Tracing:
    provider: TracerProvider
    tracer: Tracer
    instrumentors: "list[BaseInstrumentor]"
    pid: int


_on: _Tracing | None = None


def configure_tracing(settings: Settings, *, service: str) -> bool:
    """Start tracing when OTEL_EXPORTER_OTLP_ENDPOINT is set, once per process (a forked child
    starts its own: its parent's exporter holds the parent's connections); returns whether
    tracing is on."""
    if _on is not None:
        if _on.pid == os.getpid():
            return True
        stop_tracing()
    endpoint = settings.otel_exporter_otlp_endpoint
    if not endpoint:  # unset or empty
        return False
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    # Given explicitly, so that a `.env` file's value counts (the SDK reads only the
    # environment); the SDK appends the same path to the environment's.
    exporter = OTLPSpanExporter(endpoint=f"{endpoint.rstrip('/')}/v1/traces")
    start_tracing(exporter, service=settings.otel_service_name or service)
    return True


def start_tracing(exporter: SpanExporter, *, service: str) -> TracerProvider:
    """Trace this process's work into `exporter`, in batches; returns the provider."""
    global _on
    # Imported before the instrumentation wraps `create_engine`: imported while it does, the
    # asyncio engine would keep the wrapped one, and each asyncio engine would be instrumented
    # twice (stop_tracing then fails on it).
    import sqlalchemy.ext.asyncio  # noqa: F401
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    stop_tracing()
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service}))
    provider.sampler = _NoBackgroundTraces(provider.sampler)  # before any tracer is made
    provider.add_span_processor(_RedactSecrets())
    provider.add_span_processor(BatchSpanProcessor(exporter))
    instrumentors: list[BaseInstrumentor] = [
        CeleryInstrumentor(),  # type: ignore[no-untyped-call]  # its __init__ is unannotated
        HTTPXClientInstrumentor(),
        SQLAlchemyInstrumentor(),
    ]
    for instrumentor in instrumentors:
        # The SQLAlchemy instrumentation declares SQLAlchemy < 2.1 and would do nothing on
        # ours (2.1); the events it uses are unchanged (tests/tracing checks its spans).
        instrumentor.instrument(tracer_provider=provider, skip_dep_check=True)
    _on = _Tracing(provider, provider.get_tracer("podrelay"), instrumentors, os.getpid())
    return provider


def stop_tracing() -> None:
    """Undo `start_tracing`: send what is left and remove the instrumentations."""
    global _on
    if _on is None:
        return
    for instrumentor in _on.instrumentors:
        instrumentor.uninstrument()
    _on.provider.shutdown()
    _on = None


def api_telemetry() -> "TelemetryConfig":
    """`FastAPI(telemetry=...)`: request spans (with spans of dependencies, endpoint and
    serialization) while tracing is on. Metrics stay Prometheus's (`/metrics`)."""
    if _on is None:
        return {"tracing": False, "metrics": False, "logs": False, "auto_configure": False}
    return {
        "tracer_provider": _on.provider,
        "metrics": False,
        "logs": False,
        "auto_configure": False,
        "exclude": _untraced,
    }


def _untraced(scope: MutableMapping[str, Any]) -> bool:
    return scope.get("path") in UNTRACED_PATHS


def current_traceparent() -> str | None:
    """The current span's context as a W3C `traceparent`, to keep on a job's row; None while
    tracing is off or outside any span."""
    if _on is None:
        return None
    carrier: dict[str, str] = {}
    _W3C.inject(carrier)
    return carrier.get("traceparent")


def trace_id_of(traceparent: str | None) -> str | None:
    """The trace id (32 hex digits) of a `traceparent` recorded by `current_traceparent`."""
    return traceparent.split("-")[1] if traceparent else None


@contextmanager
def job_span(name: str, job_id: str | None, traceparent: str | None) -> Iterator[trace.Span]:
    """A span of work on one job, in the job's trace when it has one (`traceparent`), linked
    to the span current here (the batch's); see the module. `job_id` None: the work found no
    job (a webhook with an unknown token)."""
    if _on is None:
        yield INVALID_SPAN
        return
    parent = _W3C.extract({"traceparent": traceparent}) if traceparent else None
    current = trace.get_current_span().get_span_context()
    linked = parent is not None and current.is_valid and current.trace_flags.sampled
    with _on.tracer.start_as_current_span(
        name,
        context=parent,
        links=[Link(current)] if linked else None,
        attributes={JOB_ID_ATTRIBUTE: job_id} if job_id else None,
    ) as span:
        yield span


def in_current_context(coroutine: Coroutine[Any, Any, T]) -> Coroutine[Any, Any, T]:
    """`coroutine`, run in the caller's trace context wherever it is awaited (a task on
    another thread's event loop starts from that thread's context otherwise)."""
    if _on is None:
        return coroutine
    caller = otel_context.get_current()

    async def attached() -> T:
        token = otel_context.attach(caller)
        try:
            return await coroutine
        finally:
            otel_context.detach(token)

    return attached()
