"""An OTLP/HTTP collector stand-in: the webhook `Receiver` on 127.0.0.1 takes the exporters'
POST /v1/traces, and `exported_spans` decodes what it got (OTLP's protobuf messages)."""

import gzip
from collections.abc import Iterable
from dataclasses import dataclass

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from tests.stack.receiver import Receiver


@dataclass(frozen=True)
class ExportedSpan:
    service: str
    name: str
    kind: str  # "SERVER", "CLIENT", "PRODUCER", "CONSUMER" or "INTERNAL"
    trace_id: str
    span_id: str
    parent_id: str  # "" for a trace's root
    links: tuple[tuple[str, str], ...]  # (trace id, span id) of each linked span
    attributes: dict[str, str]


def exported_spans(collector: Receiver) -> list[ExportedSpan]:
    """Every span the collector was sent to /v1/traces, in the order they arrived."""
    with collector.lock:
        received = [r for r in collector.requests if r.path == "/v1/traces"]
    spans: list[ExportedSpan] = []
    for request in received:
        body = request.body
        if request.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        export = ExportTraceServiceRequest.FromString(body)
        for resource_spans in export.resource_spans:
            resource = _attributes(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                spans.extend(_span(resource["service.name"], span) for span in scope_spans.spans)
    return spans


def _span(service: str, span: Span) -> ExportedSpan:
    return ExportedSpan(
        service=service,
        name=span.name,
        kind=Span.SpanKind.Name(span.kind).removeprefix("SPAN_KIND_"),
        trace_id=span.trace_id.hex(),
        span_id=span.span_id.hex(),
        parent_id=span.parent_span_id.hex(),
        links=tuple((link.trace_id.hex(), link.span_id.hex()) for link in span.links),
        attributes=_attributes(span.attributes),
    )


def _attributes(pairs: Iterable[KeyValue]) -> dict[str, str]:
    return {pair.key: _text(pair.value) for pair in pairs}


def _text(value: AnyValue) -> str:
    kind = value.WhichOneof("value")
    return "" if kind is None else str(getattr(value, kind))
