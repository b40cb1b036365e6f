"""The guardrails stream processor: ``rag.requests`` → input stage → ``rag.screened`` (or a
refusal straight to the requester's ``reply_to``), and ``rag.drafts`` → output stage → the
requester's ``reply_to`` topic. Every decision also goes to ``guardrails.events``.

Checks that block on the CPU (Presidio, embeddings, the classifier) run in threads, so the event
loop keeps the Kafka heartbeats going. A check that fails to run fails the request closed (an
error reply), never open.

Run it with ``python -m services.guardrails``.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from opentelemetry import trace

from services.common import handoff, identity, kafka_admin, telemetry
from services.common.config import get_settings
from services.common.embeddings import embedder_from_settings
from services.common.events import RagReply
from services.common.exceptions import InvalidEvent
from services.common.logs import log
from services.common.processor import Emit, Inbound, Outcome, StreamProcessor, attach, done
from services.common.streaming import make_app
from services.common.topics import (
    GUARDRAILS_EVENTS,
    RAG_DRAFTS,
    RAG_REQUESTS,
    RAG_REQUESTS_DLQ,
    RAG_SCREENED,
)
from services.guardrails import audit, handlers, input_stage, output_stage, pii_indexer
from services.guardrails.checks.canary import new_canary
from services.guardrails.checks.results import CheckResult, StageVerdict
from services.guardrails.config import (
    APP_ID,
    MAX_DRAFT_BYTES,
    SERVICE_NAME,
    guardrails_settings,
    policy_store,
)
from services.guardrails.policy import DEFAULT_POLICY

logger = logging.getLogger(__name__)
settings = get_settings()
app = make_app(APP_ID, settings)
tracer = telemetry.tracer(__name__)
policies = policy_store()
authenticator = identity.authenticator_from_settings(settings)
draft_verifier = handoff.verifier_from_settings(settings, "draft", signer="rag")
T = TypeVar("T")
PRUNE_EVERY_S = 3600.0  # how often stored PII findings of older detector builds are pruned


# One embedding model for both stages: loading two at once in threads corrupts both (see
# services.common.embeddings), and one copy is enough memory. One model thread, as for torch
# below: the stage's calls are a few short texts each.
embedder = embedder_from_settings(settings, threads=1)


@functools.cache
def _input_deps() -> input_stage.InputDeps:
    # The heads' own encoder (services.guardrails.encoder), not the output stage's.
    return input_stage.load_input_deps(settings)


@functools.cache
def _output_deps() -> output_stage.OutputDeps:
    return output_stage.load_output_deps(settings, asyncio.get_running_loop(), embedder.encode)


@app.task
async def warm_up() -> None:
    """Load the detectors (MiniLM, Presidio, toxicity, the trained classifier) and seed the
    attack corpus before the first request, so no question pays for them."""
    _single_threaded_torch()
    deps = _output_deps()
    await _in_thread(input_stage.warm_up, _input_deps(), policies.get())
    await _in_thread(output_stage.warm_up, deps)


@app.task
async def index_pii_findings() -> None:
    """The cited chunks' PII findings, computed in the background (``pii_indexer``): the
    output stage then looks them up instead of analysing every chunk of every answer."""
    own = guardrails_settings()
    deps = _output_deps()
    if not own.guardrails_pii_indexer or deps.pii_store is None:
        return
    min_score = policies.get().output.pii.min_score
    pruned_at = float("-inf")
    while True:
        await asyncio.sleep(own.guardrails_pii_index_every_s)
        try:
            await _in_thread(pii_indexer.index_all, deps.pii_store, deps.find_pii, min_score,
                             own.guardrails_pii_index_batch, lambda: time.sleep(0.2))
            if (own.guardrails_pii_prune_after_h > 0
                    and time.monotonic() - pruned_at >= PRUNE_EVERY_S):
                pruned_at = time.monotonic()
                await _in_thread(pii_indexer.prune_stale, deps.pii_store,
                                 own.guardrails_pii_prune_after_h * 3600)
        except Exception as exc:  # noqa: BLE001 - a missed pass is redone; answers never wait
            log(logger, logging.WARNING, "PII indexing pass failed; retrying later",
                error=repr(exc)[:300])


def _single_threaded_torch() -> None:
    """The checks run many tiny model calls (one question, a few sentences) from concurrent
    agents; torch's intra-op pool only adds contention there (one MiniLM query: ~8 ms with one
    thread, ~480 ms with two on a busy 2-core host). Throughput comes from the agents'
    concurrency and from replicas."""
    import torch

    torch.set_num_threads(1)


async def _in_thread(fn: Callable[..., T], *args: Any) -> T:
    ctx = contextvars.copy_context()
    return await asyncio.to_thread(ctx.run, fn, *args)


async def screen(message: Inbound) -> Outcome:
    """Input stage: authenticate, screen, audit; then the signed screened request, or the
    requester's refusal."""
    request = handlers.screen_request(message.value)
    if not await _reply_topic_exists(request.reply_to):
        raise InvalidEvent("forbidden", f"reply_to topic {request.reply_to!r} does not exist")
    span = trace.get_current_span()
    span.set_attribute("request.id", request.request_id)
    try:
        request = handlers.authenticate(request, authenticator, DEFAULT_POLICY)
    except InvalidEvent as error:
        # Not a poison message but a refused caller: an error reply and an audit record.
        span.set_attribute("guardrails.auth", error.error_type)
        return done(*_audit(request.request_id, auth_verdict(error), None,
                            request.options.domain),
                    *await _reply(request.reply_to, RagReply(
                        request_id=request.request_id, status="error", answer="",
                        error=f"{error.error_type}: {error.reason}",
                        error_code=error.error_type)))
    principal = request.principal
    assert principal is not None  # authenticate() always sets it
    span.set_attribute("principal.id", principal.id)
    policy = policies.get(request.options.domain)
    try:
        verdict, history = await _in_thread(
            input_stage.screen_conversation, request.question,
            [turn.content for turn in request.history], policy, _input_deps())
    except Exception as exc:  # noqa: BLE001 - fail closed: unchecked requests never pass
        return done(*await _fail_closed(request.request_id, request.reply_to, "input", exc))
    _record(span, verdict)
    audited = _audit(request.request_id, verdict, principal.id, request.options.domain)
    if verdict.blocked:
        return done(*audited, *await _reply(request.reply_to, handlers.refusal_reply(
            request, verdict, policy, audit.current_trace_id())))
    screening = input_stage.screening_for(verdict, policy, new_canary(),
                                          _input_deps().encoder_id)
    screened = handlers.screened_request(request, verdict, screening, history)
    return done(*audited, Emit(RAG_SCREENED, request.request_id.encode(),
                               handoff.signed_json(screened, "screened-request",
                                                   _signing_key())))


async def tell_requester(message: Inbound, error: InvalidEvent) -> tuple[Emit, ...]:
    """A dead-lettered request or draft (forged, malformed, too large, a bug in this stage) that
    names a client reply topic gets an error reply saying why instead of waiting for its
    timeout; nothing from the message goes back but its id."""
    routed = handlers.error_reply_for(message.value, error)
    return await _reply(*routed) if routed is not None else ()


def auth_verdict(error: InvalidEvent) -> StageVerdict:
    """A refused credential as an input-stage decision, so the audit trail shows it."""
    result = CheckResult("authentication", None, True, "block", error.reason[:300])
    return StageVerdict("input", "identity", "", (result,))


async def finalize(message: Inbound) -> Outcome:
    """Output stage: a verified draft → checked, audited → the requester's reply."""
    reply_to, draft = handlers.finalize_draft(message.payload or {})
    if not await _reply_topic_exists(reply_to):
        raise InvalidEvent("forbidden", f"reply_to topic {reply_to!r} does not exist")
    span = trace.get_current_span()
    span.set_attribute("request.id", draft.request_id)
    policy = policies.get(handlers.output_policy_name(draft))
    started = time.perf_counter()
    try:
        verdict = await _in_thread(output_stage.screen_output, draft, policy, _output_deps())
    except Exception as exc:  # noqa: BLE001 - fail closed: an unchecked answer never leaves
        return done(*await _fail_closed(draft.request_id, reply_to, "output", exc))
    checked_ms = round((time.perf_counter() - started) * 1000, 3)
    _record(span, verdict)
    principal = draft.evidence.principal.id if draft.evidence else None
    reply = output_stage.final_reply(draft, verdict, policy)
    # The output checks' own time beside the rag worker's stages, so a slow answer shows where.
    reply = reply.model_copy(update={"latency_ms": {**reply.latency_ms,
                                                    "guardrails_output": checked_ms}})
    return done(*_audit(draft.request_id, verdict, principal, handlers.draft_domain(draft)),
                *await _reply(reply_to, reply))


def _record(span: Any, verdict: StageVerdict) -> None:
    """Stage span attributes plus one child span per check (decision, score, policy)."""
    span.set_attributes({
        "guardrails.policy_version": verdict.policy_version,
        "guardrails.blocked": verdict.blocked,
        "guardrails.decisions": [f"{r.check}={r.action}" for r in verdict.results],
    })
    for result in verdict.results:
        with tracer.start_as_current_span(f"guardrails.{verdict.stage}.{result.check}") as child:
            child.set_attributes({
                "guardrails.check": result.check, "guardrails.action": result.action,
                "guardrails.triggered": result.triggered,
                "guardrails.score": -1.0 if result.score is None else float(result.score),
                "guardrails.policy_version": verdict.policy_version})


def _audit(request_id: str, verdict: StageVerdict, principal_id: str | None,
           domain: str | None) -> tuple[Emit, ...]:
    """Every decision to guardrails.events; sent (and acknowledged) before the request moves
    on, because the processor delivers a stage's sends in order."""
    events = audit.events_for(request_id, verdict, principal_id, domain,
                              audit.current_trace_id())
    return tuple(Emit(GUARDRAILS_EVENTS, request_id.encode(), e.to_json()) for e in events)


async def _fail_closed(request_id: str, reply_to: str, stage: str,
                       exc: Exception) -> tuple[Emit, ...]:
    log(logger, logging.ERROR, "guardrail checks failed; request failed closed",
        request_id=request_id, stage=stage, error=repr(exc)[:300])
    return await _reply(reply_to, RagReply(
        request_id=request_id, status="error", answer="", error_code="guardrails_unavailable",
        error=f"guardrails unavailable ({stage} stage): {type(exc).__name__}"))


_known_topics: set[str] = set()


async def _reply_topic_exists(topic: str) -> bool:
    """Known topics answer at once; an unknown one is looked up off the event loop."""
    if topic in _known_topics:
        return True
    return await asyncio.to_thread(reply_topic_exists, topic)


def reply_topic_exists(topic: str) -> bool:
    """Sending to a missing topic would block the stage until a timeout; check once, remember
    topics that exist (they are never deleted while we run)."""
    if topic in _known_topics:
        return True
    info = _admin().list_topics(topic, timeout=10).topics.get(topic)
    if info is None or info.error is not None:
        return False
    _known_topics.add(topic)
    return True


@functools.cache
def _signing_key() -> handoff.SigningKey:
    return handoff.signing_key_from_settings(settings, "guardrails")


@functools.cache
def _admin() -> kafka_admin.AdminClient:
    return kafka_admin.admin(settings.kafka_bootstrap)


async def _reply(reply_to: str, reply: RagReply) -> tuple[Emit, ...]:
    """Only to a client reply topic that exists: a bad reply_to is logged and dropped here
    (its request was dead-lettered with the reason), never a blocked or crashing stage."""
    if not handlers.allowed_reply_topic(reply_to) or not await _reply_topic_exists(reply_to):
        log(logger, logging.WARNING, "reply dropped: reply_to is not an existing client reply "
            "topic", request_id=reply.request_id, reply_to=reply_to[:250])
        return ()
    return (Emit(reply_to, reply.request_id.encode(), reply.to_json()),)


attach(app, StreamProcessor(service=SERVICE_NAME, source=RAG_REQUESTS,
                            dead_letters=RAG_REQUESTS_DLQ, process=screen,
                            on_dead_letter=tell_requester, span_name="guardrails.input",
                            concurrency=4))
attach(app, StreamProcessor(service=SERVICE_NAME, source=RAG_DRAFTS,
                            dead_letters=RAG_REQUESTS_DLQ, process=finalize,
                            on_dead_letter=tell_requester, span_name="guardrails.output",
                            concurrency=4, signed_by=draft_verifier, max_bytes=MAX_DRAFT_BYTES))
