"""Answering one request, as typed stages: plan → embed → cache → retrieve → generate → store.

Each stage is a small function with a typed result, so :func:`answer` reads as the path a
question takes. Blocking work (embedding, SQL) runs in threads so the worker's event loop keeps
its Kafka heartbeats; every stage is timed and traced.
"""

from __future__ import annotations

import asyncio
import contextvars
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal, TypeVar

import numpy as np
from opentelemetry import trace
from sqlalchemy.engine import Engine

from services.common import metrics
from services.common.embeddings import Embedder
from services.common.events import DraftEvidence, Principal, RagReply, RagRequest, Usage
from services.common.exceptions import CustomLLMError
from services.common.generation.adapters import served_version
from services.common.generation.base import GenerationBackend, GenerationRequest
from services.common.prompting.context_item import ContextItem
from services.common.prompting.prompts import PromptTemplate, render, template_for
from services.rag import adapter_policy, answer_mode, cache, handlers, screening
from services.rag.access import AccessScope, scope_for, scope_key
from services.rag.config import RagSettings
from services.rag.context import build_context
from services.rag.query_encoder import QueryEncoder
from services.rag.relevance import best_similarity
from services.rag.rerank import Reranker
from services.rag.retrieval import (
    DEFAULT_WEIGHTS,
    RetrievalFilters,
    RetrievedChunk,
    Unit,
    retrieve,
)

tracer = trace.get_tracer(__name__)
T = TypeVar("T")


@dataclass
class RagDeps:
    engine: Engine
    embedder: Embedder
    backend: GenerationBackend
    config: RagSettings
    model_id: str  # what the backend serves, for replies, cache keys and spans
    max_new_tokens: int
    reranker: Reranker | None = None
    # Follows the index's active embedding model (``customllm index switch``); built from
    # ``embedder`` (the configured model) when not given.
    query_encoder: QueryEncoder | None = None

    def __post_init__(self) -> None:
        if self.query_encoder is None:
            self.query_encoder = QueryEncoder(self.engine, self.embedder)


@dataclass(frozen=True)
class Plan:
    """What a request resolves to before any work is done."""

    principal: Principal
    template: PromptTemplate
    scope: AccessScope
    top_k: int
    mode: str  # "extractive" or "free"
    adapter: str | None  # the one that answers: the request's, or the backend's default one
    adapter_version: str | None  # resolved now: a promotion must not be served from cache
    cache_context: str


@dataclass(frozen=True)
class Retrieved:
    chunks: list[RetrievedChunk]
    items: list[ContextItem]
    evidence: DraftEvidence
    abstain: bool  # nothing close enough to the question: "don't know" without the model


@dataclass(frozen=True)
class Generated:
    text: str
    usage: Usage
    abstained: bool
    model: str


async def answer(request: RagRequest, deps: RagDeps) -> RagReply:
    started, timer = time.perf_counter(), _Timer()
    carried, request = screening.take_question_vector(request)
    plan = await _plan(request, deps)
    with timer.stage("embed"):
        vector_model, vector = await _in_thread(deps.query_encoder.encode, request.question,
                                                carried)
    # The semantic cache compares question vectors: only those of the same embedding model
    # (after ``customllm index switch`` the old model's entries are simply not found).
    plan = replace(plan, cache_context=cache.context_key(
        {"plan": plan.cache_context, "embedding_model": vector_model}))
    use_cache = request.options.use_cache and screening.may_cache(request.screening)
    if use_cache:
        with timer.stage("cache_lookup"):
            hit = await _in_thread(cache.lookup, deps.engine, plan.cache_context,
                                   request.question, vector, deps.config.semantic_cache_threshold)
        if hit is not None:
            return _finish(_from_cache(hit, request, plan), timer, started)
    with timer.stage("retrieval") as span:
        found = await _retrieve(request, plan, vector, vector_model, deps, span)
    fields = _reply_fields(request, plan, deps)
    if request.options.retrieval_only:
        return _finish(RagReply(
            request_id=request.request_id, answer="", evidence=found.evidence, **fields,
            citations=handlers.citations_for("", found.items, False, found.chunks)),
            timer, started)
    if found.abstain:
        generated = Generated(plan.template.no_answer, handlers.usage_with_cost(0, 0, 0, 0),
                              True, deps.model_id)
    else:
        with timer.stage("generation") as span:
            generated = await _generate(request, plan, found, deps, span)
    reply = RagReply(request_id=request.request_id, answer=generated.text,
                     citations=handlers.citations_for(generated.text, found.items,
                                                      generated.abstained, found.chunks),
                     usage=generated.usage, evidence=found.evidence,
                     **{**fields, "model": generated.model})
    if use_cache and not screening.leaked_canary(generated.text,
                                                                  request.screening):
        await _store(reply, request, plan, found, vector, generated.abstained, deps)
    return _finish(reply, timer, started)


async def _plan(request: RagRequest, deps: RagDeps) -> Plan:
    options, principal = request.options, request.principal
    if principal is None:
        raise CustomLLMError("request without a verified principal")
    if options.adapter is not None:
        await _in_thread(adapter_policy.check_servable, deps.engine, options.adapter, principal)
    # A domain names a guardrail policy and, where one exists, a prompt template; a domain
    # with a policy of its own but no template uses the worker's default template.
    template = template_for(options.domain, deps.config.prompt_domain)
    scope = screening.widen_scope(scope_for(principal.id, principal.groups, principal.clearance),
                                  request.screening)
    top_k = options.top_k or deps.config.retrieval_top_k
    mode = answer_mode.resolve(options.answer_mode, template, deps.backend)
    adapter = options.adapter or await _default_adapter(deps.backend, mode)
    adapter_version = served_version(deps.backend, adapter)
    context = cache.context_key({
        "scope": scope_key(scope), "adapter": adapter,
        "adapter_version": adapter_version, "template": template.id,
        "model": deps.model_id, "backend": deps.backend.name, "top_k": top_k,
        "retrieval_unit": deps.config.retrieval_unit,
        "filters": options.filters.model_dump(), "max_tokens": options.max_tokens,
        "temperature": options.temperature, "retrieval_only": options.retrieval_only,
        "answer_mode": mode,
        "history": [turn.model_dump() for turn in request.history],
        "guardrails": screening.cache_directives(request.screening),
    })
    return Plan(principal, template, scope, top_k, mode, adapter, adapter_version, context)


async def _default_adapter(backend: object, mode: str) -> str | None:
    """The adapter a backend answers extractive requests with when none is named (the local
    engine's shipped answer adapter): named in the reply and the audit, and part of the cache
    key, so answers of a newly promoted version are never served from the previous one's."""
    default = getattr(backend, "default_adapter", None)
    if mode != "extractive" or default is None:
        return None
    return await _in_thread(default)


def _from_cache(hit: cache.CacheHit, request: RagRequest, plan: Plan) -> RagReply:
    """The stored evidence goes with a cached answer: it passes the output stage too."""
    stored = hit.reply.evidence.retrieved if hit.reply.evidence else []
    return hit.reply.model_copy(update={
        "evidence": DraftEvidence(principal=plan.principal, screening=request.screening,
                                  retrieved=stored),
        "request_id": request.request_id, "cached": True, "cache_kind": hit.kind,
        "usage": hit.reply.usage.model_copy(update={"cost_usd": 0.0})})


async def _retrieve(request: RagRequest, plan: Plan, vector: np.ndarray, vector_model: str,
                    deps: RagDeps, span: trace.Span) -> Retrieved:
    options, directives = request.options, request.screening
    filters = RetrievalFilters(
        doc_ids=tuple(options.filters.doc_ids), doc_id_prefix=options.filters.doc_id_prefix,
        sources=tuple(options.filters.sources), licenses=tuple(options.filters.licenses),
        metadata=dict(options.filters.metadata),
        max_injection_score=screening.injection_cutoff(directives))
    span.set_attributes({"db.system": "postgresql", "db.operation": "hybrid_search",
                         "retrieval.top_k": plan.top_k})
    chunks = await _in_thread(retrieve, deps.engine, vector, request.question, plan.scope,
                              plan.top_k, filters, "hybrid", deps.config.retrieval_candidates,
                              deps.reranker, DEFAULT_WEIGHTS, vector_model,
                              _unit(deps.config.retrieval_unit, options.retrieval_only))
    span.set_attributes({"retrieval.chunks": len(chunks), "embedding.model": vector_model})
    # Whether to abstain only matters to generation: a retrieval-only reply lists what was
    # found either way, so it does not pay the relevance query's round trip.
    abstain = False if options.retrieval_only else handlers.should_abstain(
        await _in_thread(best_similarity, deps.engine, vector, [c.chunk_id for c in chunks],
                         vector_model), deps.config.min_relevance)
    # The token budget is the prompt's: a retrieval-only reply builds none and lists all top_k.
    budget = sys.maxsize if options.retrieval_only else deps.config.context_token_budget
    items = screening.fence(build_context(chunks, budget), chunks, directives)
    return Retrieved(chunks, items, screening.evidence(plan.principal, directives, chunks, items),
                     abstain)


def _unit(configured: Literal["auto", "passage", "chunk"], retrieval_only: bool) -> Unit:
    """What ``top_k`` counts for this request (``RagSettings.retrieval_unit``)."""
    if configured == "auto":
        return "passage" if retrieval_only else "chunk"
    return configured


async def _generate(request: RagRequest, plan: Plan, found: Retrieved, deps: RagDeps,
                    span: trace.Span) -> Generated:
    options, extractive = request.options, plan.mode == "extractive"
    messages = render(plan.template, request.question, found.items,
                      request.screening.canary if request.screening else None, extractive)
    messages = messages[:1] + [turn.model_dump() for turn in request.history] + messages[1:]
    span.set_attributes({"gen_ai.system": deps.backend.name,
                         "gen_ai.request.model": deps.model_id,
                         "gen_ai.request.adapter": plan.adapter or "",
                         "gen_ai.request.adapter_version": plan.adapter_version or ""})
    result = await deps.backend.generate(GenerationRequest(
        messages=messages, max_tokens=options.max_tokens or (
            answer_mode.EXTRACTIVE_MAX_TOKENS if extractive else deps.max_new_tokens),
        temperature=options.temperature, adapter=options.adapter,
        extractive=answer_mode.extractive_request(found.items, plan.template, request.question)
        if extractive else None))
    span.set_attributes({"gen_ai.usage.input_tokens": result.prompt_tokens,
                         "gen_ai.usage.output_tokens": result.completion_tokens,
                         "gen_ai.response.finish_reason": result.finish_reason})
    usage = handlers.usage_with_cost(result.prompt_tokens, result.completion_tokens,
                                     deps.config.price_per_1k_prompt_tokens,
                                     deps.config.price_per_1k_completion_tokens)
    # result.abstained: an extractive answer that is the no-answer text
    return Generated(result.text.strip(), usage, result.abstained, result.model)


def _reply_fields(request: RagRequest, plan: Plan, deps: RagDeps) -> dict[str, Any]:
    return {"template_version": plan.template.id, "backend": deps.backend.name,
            "model": deps.model_id, "adapter": plan.adapter,
            "adapter_version": plan.adapter_version}


async def _store(reply: RagReply, request: RagRequest, plan: Plan, found: Retrieved,
                 vector: np.ndarray, abstained: bool, deps: RagDeps) -> None:
    """Cache the answer with the versions of the documents it was built from.

    An abstention depends on what is *not* indexed yet: stored without documents, it is
    dropped by the next index change of any document. The evidence is stored (the output stage
    checks a hit against it) but without this request's directives: the canary must not
    outlive it."""
    versions = {} if abstained else await _in_thread(
        cache.document_versions, deps.engine, sorted({item.doc_id for item in found.items}))
    stored = reply.model_copy(update={"evidence": found.evidence.model_copy(
        update={"screening": None})})
    await _in_thread(cache.store, deps.engine, plan.cache_context, request.question, vector,
                     stored, versions, deps.config.cache_ttl_s)


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


def _finish(reply: RagReply, timer: _Timer, started: float) -> RagReply:
    span = trace.get_current_span().get_span_context()
    latency = {**timer.stages, "total": round((time.perf_counter() - started) * 1000, 3)}
    metrics.record_reply(latency, reply.usage.prompt_tokens, reply.usage.completion_tokens,
                         reply.usage.cost_usd, reply.cache_kind or "miss")
    return reply.model_copy(update={
        "latency_ms": latency,
        "trace_id": format(span.trace_id, "032x") if span.is_valid else None,
    })
