"""One trace per document event: publish → ingest → embedder → database write."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from services.common import telemetry
from tests.support.documents import change, expected_hashes, paragraphs, unique_prefix
from tests.support.stack import wait_for

pytestmark = pytest.mark.e2e

WORKER_SPANS = {"ingest.process", "embedder.process", "embedder.embed", "db.swap_chunks"}


def test_one_trace_spans_publish_ingest_embed_and_db_write(stack, workers, otlp_receiver):
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    doc = change(unique_prefix("trace") + "doc", 1, paragraphs(77, 3))

    with provider.get_tracer("tests").start_as_current_span("publish"):
        stack.publish([doc], headers=telemetry.inject_headers())
    (publish_span,) = exporter.get_finished_spans()
    trace_id = format(publish_span.context.trace_id, "032x")

    spans = wait_for(
        lambda: (found := otlp_receiver.trace(trace_id))
        and {s.name for s in found} >= WORKER_SPANS and found,
        60, what="worker spans for the published document",
    )
    by_name = {span.name: span for span in spans}
    publish_id = format(publish_span.context.span_id, "016x")
    assert by_name["ingest.process"].parent_span_id == publish_id
    assert by_name["ingest.process"].service == "ingest"
    assert by_name["embedder.process"].parent_span_id == by_name["ingest.process"].span_id
    assert by_name["embedder.process"].service == "embedder"
    assert by_name["embedder.embed"].parent_span_id == by_name["embedder.process"].span_id
    assert by_name["db.swap_chunks"].parent_span_id == by_name["embedder.process"].span_id
    assert by_name["db.swap_chunks"].attributes["db.system"] == "postgresql"
    assert by_name["embedder.embed"].attributes["chunks.embedded"] == len(
        expected_hashes(doc.content))
