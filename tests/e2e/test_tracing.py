"""One trace per document event: publish → ingest → embedder → database write."""

from __future__ import annotations

import uuid

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
    # A fresh seed: text embedded earlier in the session would be reused from the cache.
    doc = change(unique_prefix("trace") + "doc", 1, paragraphs(uuid.uuid4().int % 10**9, 3))

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


QUERY_SPANS = {("gateway", "gateway.chat_completions"), ("guardrails", "guardrails.input"),
               ("rag", "rag.request"), ("rag", "rag.retrieval"), ("rag", "rag.generation"),
               ("guardrails", "guardrails.output")}


def test_one_trace_per_question_from_gateway_to_reply(stack, gateway_url, otlp_receiver):
    import httpx

    from tests.support.corpus import corpus
    from tests.support.keys import GATEWAY_USER, bearer

    prefix = unique_prefix("qtrace")
    docs = corpus(prefix)
    stack.publish(docs)
    stack.wait_indexed({d.doc_id: 1 for d in docs})
    response = httpx.post(f"{gateway_url}/v1/chat/completions", timeout=180,
                          headers=bearer(GATEWAY_USER),
                          json={"model": "customllm", "max_tokens": 8, "use_cache": False,
                                "messages": [{"role": "user", "content": "Who designed the "
                                              "Zorblax reactor?"}],
                                "filters": {"doc_id_prefix": prefix}})
    assert response.status_code == 200, response.text
    trace_id = response.json()["customllm"]["trace_id"]

    spans = wait_for(
        lambda: (found := otlp_receiver.trace(trace_id))
        and {(s.service, s.name) for s in found} >= QUERY_SPANS and found,
        60, what="spans of every stage in the question's trace")
    by_name = {span.name: span for span in spans}
    roots = [span for span in spans if not span.parent_span_id]
    assert [root.service for root in roots] == ["gateway"]  # one trace, rooted at the gateway
    generation = by_name["rag.generation"]
    assert generation.attributes["gen_ai.usage.output_tokens"] > 0
    assert generation.attributes["gen_ai.usage.input_tokens"] > 0
    assert by_name["rag.retrieval"].attributes["db.system"] == "postgresql"
