"""The rag worker: ``rag.screened`` → retrieval + generation → ``rag.drafts``; and cache
invalidation from ``docs.status``.

Run it with ``python -m services.rag``.
"""

from __future__ import annotations

import asyncio
import logging

import faust
from faust.types import EventT
from opentelemetry.trace import SpanKind

from services.common import telemetry
from services.common.config import get_settings
from services.common.db import make_engine
from services.common.dlq import send_to_dlq
from services.common.embeddings import embedder_from_settings
from services.common.events import RagReply, RagRequest
from services.common.exceptions import CustomLLMError, InvalidEvent
from services.common.logs import log
from services.common.messages import decode_json, parse_model
from services.common.streaming import make_app
from services.common.topics import DOCS_STATUS, RAG_DRAFTS, RAG_REQUESTS_DLQ, RAG_SCREENED
from services.rag import cache, pipeline
from services.rag.config import APP_ID, MAX_REQUEST_BYTES, SERVICE_NAME, rag_config
from services.rag.generation.factory import backend_from_settings
from services.rag.rerank import reranker_from_path

logger = logging.getLogger(__name__)
settings = get_settings()
app = make_app(APP_ID, settings)
tracer = telemetry.tracer(__name__)
deps = pipeline.RagDeps(
    engine=make_engine(settings.sqlalchemy_url, pool_size=8),
    embedder=embedder_from_settings(settings),
    backend=backend_from_settings(settings),
    config=rag_config(settings),
    reranker=reranker_from_path(settings.reranker_model_path),
)

screened_topic = app.topic(RAG_SCREENED)
drafts_topic = app.topic(RAG_DRAFTS)
dlq_topic = app.topic(RAG_REQUESTS_DLQ)
status_topic = app.topic(DOCS_STATUS)


@app.task
async def warm_up() -> None:
    """Load the embedding model and the generation backend before the first question."""
    await asyncio.to_thread(deps.embedder.warm_up)
    await asyncio.to_thread(deps.backend.warm_up)


# Several requests in flight per worker: retrieval of one overlaps generation of another.
@app.agent(screened_topic, concurrency=4)
async def answer_requests(stream: faust.StreamT) -> None:
    async for event in stream.events():
        await handle_request(event)


async def handle_request(event: EventT) -> None:
    message = event.message
    with tracer.start_as_current_span("rag.request", kind=SpanKind.CONSUMER,
                                      context=telemetry.extract_context(message.headers)) as span:
        try:
            request = parse_model(RagRequest, decode_json(
                message.value or b"", MAX_REQUEST_BYTES, "rag-request.v1"))
        except InvalidEvent as error:
            await send_to_dlq(dlq_topic, event, error, SERVICE_NAME)
            return
        span.set_attribute("request.id", request.request_id)
        try:
            reply = await pipeline.answer(request, deps)
        except CustomLLMError as exc:
            # A request that cannot be answered (unknown adapter, backend down...) still gets
            # a reply saying why; the caller should not have to wait for a timeout.
            log(logger, logging.WARNING, "request failed", request_id=request.request_id,
                error=str(exc)[:300])
            span.record_exception(exc)
            reply = RagReply(request_id=request.request_id, status="error", answer="",
                             error=f"{type(exc).__name__}: {exc}"[:2000])
        span.set_attribute("reply.cached", reply.cached)
        draft = reply.model_copy(update={"reply_to": request.reply_to})
        await (await drafts_topic.send(key=request.request_id.encode(), value=draft.to_json(),
                                       headers=telemetry.inject_headers()))


@app.agent(status_topic)
async def invalidate_cache(stream: faust.StreamT) -> None:
    """An answer built from a document that changed must not be served again."""
    async for event in stream.events():
        if event.message.key is None:
            continue
        doc_id = event.message.key.decode("utf-8", "replace")
        try:
            status = decode_json(event.message.value or b"", 1_000_000, "doc-status.v1")
        except InvalidEvent:
            continue
        if status["state"] in ("indexed", "deleted"):
            await asyncio.to_thread(cache.invalidate_document, deps.engine, doc_id)
