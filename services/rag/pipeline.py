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
from services.common.events import DraftEvidence, RagReply, RagRequest
from services.common.exceptions import CustomLLMError
from services.common.generation.adapters import served_version
from services.common.generation.base import GenerationBackend, GenerationRequest
from services.common.prompting.prompts import domains, load_template, render
from services.rag import adapter_policy, answer_mode, cache, handlers, screening
from services.rag.access import scope_for, scope_key
from services.rag.config import RagConfig
from services.rag.context import build_context
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
    if principal is None:
        raise CustomLLMError("request without a verified principal")
    if options.adapter is not None:
        await _in_thread(adapter_policy.check_servable, deps.engine, options.adapter, principal)
    # A domain names a guardrail policy and, where one exists, a prompt template; a domain
    # with a policy of its own but no template uses the worker's default template.
    template = load_template(options.domain if options.domain in domains() else config.domain)
    directives = request.screening
    scope = screening.widen_scope(scope_for(principal.id, principal.groups, principal.clearance),
                                  directives)
    top_k = options.top_k or config.top_k
    mode = answer_mode.resolve(options.answer_mode, template, deps.backend)
    # Resolved now: a promotion changes what the name serves, and the cache must not answer
    # with the previous version's reply.
    adapter_version = served_version(deps.backend, options.adapter)
    context = cache.context_key({
        "scope": scope_key(scope), "adapter": options.adapter,
        "adapter_version": adapter_version, "template": template.id,
        "model": config.model_id, "backend": deps.backend.name, "top_k": top_k,
        "filters": options.filters.model_dump(), "max_tokens": options.max_tokens,
        "temperature": options.temperature, "retrieval_only": options.retrieval_only,
        "answer_mode": mode,
        "history": [turn.model_dump() for turn in request.history],
        "guardrails": screening.cache_directives(directives),
    })
    with timer.stage("embed"):
        vector = (await _in_thread(deps.embedder.encode, [request.question]))[0]
    if options.use_cache:
        with timer.stage("cache_lookup"):
            hit = await _in_thread(cache.lookup, deps.engine, context, request.question, vector,
                                   config.cache_threshold)
        if hit is not None:
            # The stored evidence goes with it: a cached answer passes the output stage too.
            stored = hit.reply.evidence.retrieved if hit.reply.evidence else []
            return _finish(hit.reply.model_copy(update={
                "evidence": DraftEvidence(principal=principal, screening=directives,
                                          retrieved=stored),
                "request_id": request.request_id, "cached": True, "cache_kind": hit.kind,
                "usage": hit.reply.usage.model_copy(update={"cost_usd": 0.0})}), timer, started)
    filters = RetrievalFilters(
        doc_ids=tuple(options.filters.doc_ids), doc_id_prefix=options.filters.doc_id_prefix,
        sources=tuple(options.filters.sources), licenses=tuple(options.filters.licenses),
        metadata=dict(options.filters.metadata),
        max_injection_score=screening.injection_cutoff(directives))
    with timer.stage("retrieval") as span:
        span.set_attributes({"db.system": "postgresql", "db.operation": "hybrid_search",
                             "retrieval.top_k": top_k})
        chunks = await _in_thread(retrieve, deps.engine, vector, request.question, scope, top_k,
                                  filters, "hybrid", config.candidates, deps.reranker)
        span.set_attribute("retrieval.chunks", len(chunks))
        best = await _in_thread(best_similarity, deps.engine, vector,
                                [c.chunk_id for c in chunks])
        items = screening.fence(build_context(chunks, config.context_token_budget), chunks,
                                directives)
    evidence = screening.evidence(principal, directives, chunks, items)
    abstained = handlers.should_abstain(best, config.min_relevance)
    reply_fields: dict[str, Any] = {"template_version": template.id, "backend": deps.backend.name,
                                    "model": config.model_id, "adapter": options.adapter,
                                    "adapter_version": adapter_version}
    if options.retrieval_only:
        reply = RagReply(request_id=request.request_id, answer="",
                         citations=handlers.citations_for("", items, abstained=False,
                                                          chunks=chunks),
                         evidence=evidence, **reply_fields)
        return _finish(reply, timer, started)
    if abstained:
        answer_text, usage = template.no_answer, handlers.usage_with_cost(0, 0, 0, 0)
    else:
        extractive = mode == "extractive"
        messages = render(template, request.question, items,
                          directives.canary if directives else None, extractive)
        history = [turn.model_dump() for turn in request.history]
        messages = messages[:1] + history + messages[1:]
        with timer.stage("generation") as span:
            span.set_attributes({"gen_ai.system": deps.backend.name,
                                 "gen_ai.request.model": config.model_id,
                                 "gen_ai.request.adapter": options.adapter or "",
                                 "gen_ai.request.adapter_version": adapter_version or ""})
            result = await deps.backend.generate(GenerationRequest(
                messages=messages, max_tokens=options.max_tokens or (
                    answer_mode.EXTRACTIVE_MAX_TOKENS if extractive else config.max_new_tokens),
                temperature=options.temperature, adapter=options.adapter,
                extractive=answer_mode.extractive_request(items, template, request.question)
                if extractive else None))
            span.set_attributes({"gen_ai.usage.input_tokens": result.prompt_tokens,
                                 "gen_ai.usage.output_tokens": result.completion_tokens,
                                 "gen_ai.response.finish_reason": result.finish_reason})
        answer_text = result.text.strip()
        abstained = result.abstained  # an extractive answer that is the no-answer text
        usage = handlers.usage_with_cost(result.prompt_tokens, result.completion_tokens,
                                         config.price_prompt_per_1k,
                                         config.price_completion_per_1k)
        reply_fields["model"] = result.model
    reply = RagReply(request_id=request.request_id, answer=answer_text,
                     citations=handlers.citations_for(answer_text, items, abstained, chunks),
                     usage=usage, evidence=evidence, **reply_fields)
    if options.use_cache and not screening.leaked_canary(answer_text, directives):
        # An abstention depends on what is *not* indexed yet: stored without documents, it is
        # dropped by the next index change of any document.
        versions = {} if abstained else await _in_thread(
            cache.document_versions, deps.engine, sorted({item.doc_id for item in items}))
        # Stored with the chunks it was built from (the output stage checks a hit against
        # them) but without this request's directives: the canary must not outlive it.
        stored = reply.model_copy(update={"evidence": evidence.model_copy(
            update={"screening": None})})
        await _in_thread(cache.store, deps.engine, context, request.question, vector, stored,
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
