"""A bounded in-memory span store fed by OTLP/HTTP, for looking at traces locally without
Docker. Production sends OTLP to a collector or Jaeger instead (see docker-compose.yml)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest


@dataclass(frozen=True)
class StoredSpan:
    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    service: str
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    status: str

    @property
    def duration_ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6


@dataclass
class TraceStore:
    """Keeps the most recent ``max_traces`` traces; older ones are dropped whole."""

    max_traces: int = 500
    _traces: OrderedDict[str, list[StoredSpan]] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def ingest(self, body: bytes) -> int:
        request = ExportTraceServiceRequest.FromString(body)
        spans = list(_spans(request))
        with self._lock:
            for span in spans:
                self._traces.setdefault(span.trace_id, []).append(span)
                self._traces.move_to_end(span.trace_id)
            while len(self._traces) > self.max_traces:
                self._traces.popitem(last=False)
        return len(spans)

    def recent(self, limit: int = 100) -> list[list[StoredSpan]]:
        with self._lock:
            traces = list(self._traces.values())[-limit:]
        return [sorted(t, key=lambda s: s.start_ns) for t in reversed(traces)]

    def trace(self, trace_id: str) -> list[StoredSpan]:
        with self._lock:
            return sorted(self._traces.get(trace_id, []), key=lambda s: s.start_ns)


def _spans(request: ExportTraceServiceRequest) -> Any:
    for resource_spans in request.resource_spans:
        service = next((a.value.string_value for a in resource_spans.resource.attributes
                        if a.key == "service.name"), "unknown")
        for scope in resource_spans.scope_spans:
            for span in scope.spans:
                yield StoredSpan(
                    trace_id=span.trace_id.hex(), span_id=span.span_id.hex(),
                    parent_span_id=span.parent_span_id.hex(), name=span.name, service=service,
                    start_ns=span.start_time_unix_nano, end_ns=span.end_time_unix_nano,
                    attributes={a.key: _value(a.value) for a in span.attributes},
                    status="error" if span.status.code == 2 else "ok")


def _value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None
