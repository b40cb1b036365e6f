"""The rag worker: ``rag.screened`` → retrieval + generation → ``rag.drafts``; and cache
invalidation from ``docs.status``.

Run it with ``python -m services.rag``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any

import faust
from opentelemetry import trace

from services.common import handoff, telemetry
from services.common.config import get_settings
from services.common.db import make_engine
from services.common.embeddings import embedder_from_settings
from services.common.events import RagReply, RagRequest
from services.common.exceptions import CustomLLMError, InvalidEvent
from services.common.generation.base import UnknownAdapter
from services.common.generation.factory import backend_from_settings
from services.common.logs import log
from services.common.messages import decode_json, parse_model
from services.common.processor import (
    Emit,
    Inbound,
    Outcome,
    StreamProcessor,
    attach,
    done,
)
from services.common.reply_routing import error_reply_for
from services.common.streaming import make_app
from services.common.topics import DOCS_STATUS, RAG_DRAFTS, RAG_REQUESTS_DLQ, RAG_SCREENED, spec
from services.rag import cache, pipeline
from services.rag.adapter_policy import AdapterNotServable
from services.rag.config import APP_ID, MAX_REQUEST_BYTES, SERVICE_NAME, rag_settings
from services.rag.rerank import reranker_from_path

logger = logging.getLogger(__name__)
settings = get_settings()
app = make_app(APP_ID, settings)
tracer = telemetry.tracer(__name__)
config = rag_settings()
deps = pipeline.RagDeps(
    engine=make_engine(settings.sqlalchemy_url, pool_size=8),
    embedder=embedder_from_settings(settings, threads=config.rag_encoder_threads),
    backend=backend_from_settings(settings),
    config=config,
    model_id=settings.served_model_id,
    max_new_tokens=settings.max_new_tokens,
    reranker=reranker_from_path(config.reranker_model_path),
)

screened_verifier = handoff.verifier_from_settings(settings, "screened-request",
                                                   signer="guardrails")

status_topic = app.topic(DOCS_STATUS)


@app.task
async def warm_up() -> None:
    """Load the embedding model and the generation backend before the first question."""
    await asyncio.to_thread(deps.embedder.warm_up)
    await asyncio.to_thread(deps.backend.warm_up)


async def answer(message: Inbound) -> Outcome:
    """A verified screened request → its draft. A request that cannot be answered (unknown
    adapter, backend down...) still gets a draft saying why: the caller should not have to wait
    for a timeout."""
    request = screened_request(message.payload or {})
    span = trace.get_current_span()
    span.set_attribute("request.id", request.request_id)
    try:
        reply = await pipeline.answer(request, deps)
    except CustomLLMError as exc:
        log(logger, logging.WARNING, "request failed", request_id=request.request_id,
            error=str(exc)[:300])
        span.record_exception(exc)
        code = ("unknown_adapter" if isinstance(exc, UnknownAdapter)
                else "forbidden" if isinstance(exc, AdapterNotServable)
                else "generation_failed")
        reply = RagReply(request_id=request.request_id, status="error", answer="",
                         error=f"{type(exc).__name__}: {exc}"[:2000], error_code=code)
    span.set_attribute("reply.cached", reply.cached)
    return done(_draft(reply.model_copy(update={"reply_to": request.reply_to})))


def screened_request(payload: dict[str, Any]) -> RagRequest:
    """The request the processor admitted: the input guardrail's signature is valid, so the
    principal, the directives and the question it carries are what that stage decided."""
    request = parse_model(RagRequest, payload)
    if request.principal is None or request.screening is None:
        raise InvalidEvent("unauthenticated", "signed request without principal or screening")
    return request


def _draft(draft: RagReply) -> Emit:
    return Emit(RAG_DRAFTS, draft.request_id.encode(),
                handoff.signed_json(draft, "draft", _signing_key()))


def error_draft(message: Inbound, error: InvalidEvent) -> tuple[Emit, ...]:
    """The requester of a refused or failed request learns why (through the output stage,
    which alone may write replies), instead of waiting for a timeout."""
    routed = error_reply_for(message.value, error)
    if routed is None:
        return ()
    reply_to, reply = routed
    return (_draft(reply.model_copy(update={"reply_to": reply_to})),)


# Several requests in flight per worker: retrieval of one overlaps generation of another.
attach(app, StreamProcessor(service=SERVICE_NAME, source=RAG_SCREENED,
                            dead_letters=RAG_REQUESTS_DLQ, process=answer,
                            on_dead_letter=error_draft, span_name="rag.request",
                            concurrency=4, signed_by=screened_verifier,
                            max_bytes=MAX_REQUEST_BYTES))


@functools.cache
def _signing_key() -> handoff.SigningKey:
    return handoff.signing_key_from_settings(settings, "rag")


@app.agent(status_topic)
async def invalidate_cache(stream: faust.StreamT) -> None:
    """An answer built from a document that changed must not be served again."""
    async for event in stream.events():
        if event.message.key is None:
            continue
        doc_id = event.message.key.decode("utf-8", "replace")
        try:
            status = decode_json(event.message.value or b"", 1_000_000, spec(DOCS_STATUS).schema)
        except InvalidEvent:
            continue
        if status["state"] in ("indexed", "deleted"):
            await asyncio.to_thread(cache.invalidate_document, deps.engine, doc_id)
