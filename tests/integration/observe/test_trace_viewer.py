"""The local trace viewer receives real OTLP/HTTP exports from the SDK and shows the trace."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from services.observe.app import create_app
from services.observe.store import TraceStore

pytestmark = pytest.mark.integration


def _spans():
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "ingest"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("publish"), tracer.start_as_current_span(
            "ingest.process", attributes={"doc.id": "a<b>"}):
        pass
    return exporter.get_finished_spans()


def test_exported_spans_are_listed_and_drawn():
    spans = _spans()
    client = TestClient(create_app())
    body = encode_spans(spans).SerializeToString()
    response = client.post("/v1/traces", content=body,
                           headers={"Content-Type": "application/x-protobuf"})
    assert response.status_code == 200
    trace_id = format(spans[0].context.trace_id, "032x")
    listing = client.get("/").text
    assert trace_id in listing and "publish" in listing and "ingest" in listing
    page = client.get(f"/traces/{trace_id}").text
    assert "ingest.process" in page and "padding-left:28px" in page  # nested under publish
    assert "a&lt;b&gt;" in page  # attribute values are escaped
    assert client.post("/v1/metrics", content=b"").status_code == 200


def test_store_keeps_only_the_most_recent_traces():
    store = TraceStore(max_traces=1)
    first, second = _spans(), _spans()
    store.ingest(encode_spans(first).SerializeToString())
    store.ingest(encode_spans(second).SerializeToString())
    assert store.trace(format(first[0].context.trace_id, "032x")) == []
    assert len(store.trace(format(second[0].context.trace_id, "032x"))) == 2
