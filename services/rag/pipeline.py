"""Answering one request: cache → embed → retrieve → prompt → generate → cite.

Blocking work (embedding, SQL) runs in threads so the worker's event loop keeps its Kafka
heartbeats; every stage is timed and traced.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from opentelemetry import trace
from sqlalchemy.engine import Engine

from services.common import metrics
from services.common.embeddings import Embedder
from services.common.events import RagReply, RagRequest
from services.rag import cache, handlers
from services.rag.access import scope_for, scope_key
from services.rag.config import RagConfig
from services.rag.context import build_context
from services.rag.generation.base import GenerationBackend, GenerationRequest
from services.rag.prompts import load_template, render
from services.rag.relevance import best_similarity
from services.rag.rerank import Reranker
from services.rag.retrieval import RetrievalFilters, retrieve

tracer = trace.get_tracer(__name__)
T = TypeVar("T")


@dataclass
class RagDeps:
    engine: Engine
    embedder: Embedder
    backend: GenerationBackend
    config: RagConfig
    reranker: Reranker | None = None


async def _in_thread(fn: Callable[..., T], *args: Any) -> T:
    ctx = contextvars.copy_context()
    return await asyncio.to_thread(ctx.run, fn, *args)


class _Timer:
    def __init__(self) -> None:
        self.stages: dict[str, float] = {}

    def stage(self, name: str) -> _Stage:
        return _Stage(self, name)


class _Stage:
    def __init__(self, timer: _Timer, name: str) -> None:
        self.timer, self.name = timer, name

    def __enter__(self) -> trace.Span:
        self.span = tracer.start_as_current_span(f"rag.{self.name}")
        self.started = time.perf_counter()
        return self.span.__enter__()

    def __exit__(self, *exc: object) -> None:
        self.timer.stages[self.name] = round((time.perf_counter() - self.started) * 1000, 3)
        self.span.__exit__(*exc)  # type: ignore[arg-type]


async def answer(request: RagRequest, deps: RagDeps) -> RagReply:
    started = time.perf_counter()
    timer = _Timer()
    config, options, principal = deps.config, request.options, request.principal
    template = load_template(options.domain or config.domain)
    scope = scope_for(principal.id, principal.groups, principal.clearance)
    top_k = options.top_k or config.top_k
    context = cache.context_key({
        "scope": scope_key(scope), "adapter": options.adapter, "template": template.id,
        "model": config.model_id, "backend": deps.backend.name, "top_k": top_k,
        "filters": options.filters.model_dump(), "max_tokens": options.max_tokens,
        "temperature": options.temperature, "retrieval_only": options.retrieval_only,
        "history": [turn.model_dump() for turn in request.history],
    })
    with timer.stage("embed"):
        vector = (await _in_thread(deps.embedder.encode, [request.question]))[0]
    if options.use_cache:
        with timer.stage("cache_lookup"):
            hit = await _in_thread(cache.lookup, deps.engine, context, request.question, vector,
                                   config.cache_threshold)
        if hit is not None:
            return _finish(hit.reply.model_copy(update={
                "request_id": request.request_id, "cached": True, "cache_kind": hit.kind,
                "usage": hit.reply.usage.model_copy(update={"cost_usd": 0.0})}), timer, started)
    filters = RetrievalFilters(
        doc_ids=tuple(options.filters.doc_ids), doc_id_prefix=options.filters.doc_id_prefix,
        sources=tuple(options.filters.sources), licenses=tuple(options.filters.licenses),
        metadata=dict(options.filters.metadata))
    with timer.stage("retrieval") as span:
        span.set_attributes({"db.system": "postgresql", "db.operation": "hybrid_search",
                             "retrieval.top_k": top_k})
        chunks = await _in_thread(retrieve, deps.engine, vector, request.question, scope, top_k,
                                  filters, "hybrid", config.candidates, deps.reranker)
        span.set_attribute("retrieval.chunks", len(chunks))
        best = await _in_thread(best_similarity, deps.engine, vector,
                                [c.chunk_id for c in chunks])
        items = build_context(chunks, config.context_token_budget)
    abstained = handlers.should_abstain(best, config.min_relevance)
    reply_fields: dict[str, Any] = {"template_version": template.id, "backend": deps.backend.name,
                                    "model": config.model_id, "adapter": options.adapter}
    if options.retrieval_only:
        reply = RagReply(request_id=request.request_id, answer="",
                         citations=handlers.citations_for("", items, abstained=False),
                         **reply_fields)
        return _finish(reply, timer, started)
    if abstained:
        answer_text, usage = template.no_answer, handlers.usage_with_cost(0, 0, 0, 0)
    else:
        messages = render(template, request.question, items)
        history = [turn.model_dump() for turn in request.history]
        messages = messages[:1] + history + messages[1:]
        with timer.stage("generation") as span:
            span.set_attributes({"gen_ai.system": deps.backend.name,
                                 "gen_ai.request.model": config.model_id,
                                 "gen_ai.request.adapter": options.adapter or ""})
            result = await deps.backend.generate(GenerationRequest(
                messages=messages, max_tokens=options.max_tokens or config.max_new_tokens,
                temperature=options.temperature, adapter=options.adapter))
            span.set_attributes({"gen_ai.usage.input_tokens": result.prompt_tokens,
                                 "gen_ai.usage.output_tokens": result.completion_tokens,
                                 "gen_ai.response.finish_reason": result.finish_reason})
        answer_text = result.text.strip()
        usage = handlers.usage_with_cost(result.prompt_tokens, result.completion_tokens,
                                         config.price_prompt_per_1k,
                                         config.price_completion_per_1k)
        reply_fields["model"] = result.model
    reply = RagReply(request_id=request.request_id, answer=answer_text,
                     citations=handlers.citations_for(answer_text, items, abstained),
                     usage=usage, **reply_fields)
    if options.use_cache:
        # An abstention depends on what is *not* indexed yet: stored without documents, it is
        # dropped by the next index change of any document.
        versions = {} if abstained else await _in_thread(
            cache.document_versions, deps.engine, sorted({item.doc_id for item in items}))
        await _in_thread(cache.store, deps.engine, context, request.question, vector, reply,
                         versions, config.cache_ttl_s)
    return _finish(reply, timer, started)


def _finish(reply: RagReply, timer: _Timer, started: float) -> RagReply:
    span = trace.get_current_span().get_span_context()
    latency = {**timer.stages, "total": round((time.perf_counter() - started) * 1000, 3)}
    metrics.record_reply(latency, reply.usage.prompt_tokens, reply.usage.completion_tokens,
                         reply.usage.cost_usd, reply.cache_kind or "miss")
    return reply.model_copy(update={
        "latency_ms": latency,
        "trace_id": format(span.trace_id, "032x") if span.is_valid else None,
    })
