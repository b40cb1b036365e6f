"""Writing an answer's audit record, its guardrail decisions and its feedback (migration 0008).

Each writer is an idempotent upsert keyed by what the event already makes unique (request_id,
event_id, feedback_id), so at-least-once delivery and replays never duplicate a row, and the
pieces of one request may arrive in any order: a draft before its screened request, a
decision before either.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from services.common.events import GuardrailEvent, RagReply, RagRequest
from services.common.feedback import FeedbackEvent


def _json(value: Any) -> str:
    return json.dumps(value, default=str)


def record_screened(conn: Connection, request: RagRequest) -> None:
    """Who asked (as the input guardrail derived it) and the screened question."""
    principal = request.principal
    conn.execute(text("""
        INSERT INTO answer_audit (request_id, principal_id, principal_groups, clearance, domain,
                                  question, options, policy_version, asked_at)
        VALUES (:rid, :pid, :groups, :clearance, :domain, :question, CAST(:options AS jsonb),
                :policy, :asked)
        ON CONFLICT (request_id) DO UPDATE SET
            principal_id = EXCLUDED.principal_id, principal_groups = EXCLUDED.principal_groups,
            clearance = EXCLUDED.clearance, domain = EXCLUDED.domain,
            question = EXCLUDED.question, options = EXCLUDED.options,
            policy_version = EXCLUDED.policy_version, asked_at = EXCLUDED.asked_at,
            updated_at = now()"""), {
        "rid": request.request_id, "pid": principal.id if principal else None,
        "groups": list(principal.groups) if principal else [],
        "clearance": principal.clearance if principal else None,
        "domain": request.options.domain, "question": request.question,
        "options": _json(request.options.model_dump(mode="json")),
        "policy": request.screening.policy_version if request.screening else None,
        "asked": request.created_at})


def record_draft(conn: Connection, reply: RagReply) -> None:
    """The generated answer and everything it was made from. Each retrieved chunk is stored
    with its document's version *now* (the chunk id is a content hash, so the version a later
    edit gives the document no longer holds it).

    An error draft never replaces an answer already recorded for the request: the requester
    was given the first reply (the gateway resolves on it), and a later error for the same id
    is a refused copy (a redelivered or forged screened request the rag worker dead-lettered),
    not a second answer. An answer after an error does replace it."""
    evidence = reply.evidence
    retrieved = [c.model_dump(mode="json") for c in evidence.retrieved] if evidence else []
    doc_ids = sorted({c["doc_id"] for c in retrieved})
    if doc_ids:
        versions = dict(conn.execute(
            text("SELECT doc_id, version FROM documents WHERE doc_id = ANY(:ids)"),
            {"ids": doc_ids}).all())
        for chunk in retrieved:
            chunk["doc_version"] = versions.get(chunk["doc_id"])
    principal = evidence.principal if evidence else None
    conn.execute(text("""
        INSERT INTO answer_audit (request_id, principal_id, principal_groups, clearance, status,
                                  answer, citations, retrieved, template_version, model, backend,
                                  adapter, adapter_version, usage, latency_ms, cached, trace_id,
                                  answered_at)
        VALUES (:rid, :pid, :groups, :clearance, :status, :answer, CAST(:citations AS jsonb),
                CAST(:retrieved AS jsonb), :template, :model, :backend, :adapter,
                :adapter_version, CAST(:usage AS jsonb), CAST(:latency AS jsonb), :cached,
                :trace, :answered)
        ON CONFLICT (request_id) DO UPDATE SET
            principal_id = coalesce(answer_audit.principal_id, EXCLUDED.principal_id),
            principal_groups = CASE WHEN answer_audit.principal_id IS NULL
                                    THEN EXCLUDED.principal_groups
                                    ELSE answer_audit.principal_groups END,
            clearance = coalesce(answer_audit.clearance, EXCLUDED.clearance),
            status = EXCLUDED.status, answer = EXCLUDED.answer, citations = EXCLUDED.citations,
            retrieved = EXCLUDED.retrieved, template_version = EXCLUDED.template_version,
            model = EXCLUDED.model, backend = EXCLUDED.backend, adapter = EXCLUDED.adapter,
            adapter_version = EXCLUDED.adapter_version, usage = EXCLUDED.usage,
            latency_ms = EXCLUDED.latency_ms, cached = EXCLUDED.cached,
            trace_id = coalesce(EXCLUDED.trace_id, answer_audit.trace_id),
            answered_at = EXCLUDED.answered_at, updated_at = now()
        WHERE EXCLUDED.status <> 'error' OR answer_audit.status IS NULL
              OR answer_audit.status = 'error'"""), {
        "rid": reply.request_id, "pid": principal.id if principal else None,
        "groups": list(principal.groups) if principal else [],
        "clearance": principal.clearance if principal else None, "status": reply.status,
        "answer": reply.answer,
        "citations": _json([c.model_dump(mode="json") for c in reply.citations]),
        "retrieved": _json(retrieved), "template": reply.template_version,
        "model": reply.model, "backend": reply.backend, "adapter": reply.adapter,
        "adapter_version": reply.adapter_version,
        "usage": _json(reply.usage.model_dump(mode="json")), "latency": _json(reply.latency_ms),
        "cached": reply.cached, "trace": reply.trace_id, "answered": reply.created_at})


def record_decision(conn: Connection, event: GuardrailEvent) -> None:
    """One guardrail decision; also opens the request's audit record with its principal, so a
    question blocked before retrieval still has an owner and a trace id on record."""
    conn.execute(text("""
        INSERT INTO guardrail_decisions (event_id, request_id, stage, check_name, action,
                                         triggered, score, reason, policy_version, principal_id,
                                         domain, trace_id, at)
        VALUES (:eid, :rid, :stage, :check, :action, :triggered, :score, :reason, :policy,
                :pid, :domain, :trace, :at)
        ON CONFLICT (event_id) DO NOTHING"""), {
        "eid": event.event_id, "rid": event.request_id, "stage": event.stage,
        "check": event.check, "action": event.action, "triggered": event.triggered,
        "score": event.score, "reason": event.reason, "policy": event.policy_version,
        "pid": event.principal_id, "domain": event.domain, "trace": event.trace_id,
        "at": event.at})
    conn.execute(text("""
        INSERT INTO answer_audit (request_id, principal_id, domain, policy_version, trace_id)
        VALUES (:rid, :pid, :domain, :policy, :trace)
        ON CONFLICT (request_id) DO UPDATE SET
            principal_id = coalesce(answer_audit.principal_id, EXCLUDED.principal_id),
            trace_id = coalesce(answer_audit.trace_id, EXCLUDED.trace_id)"""), {
        "rid": event.request_id, "pid": event.principal_id, "domain": event.domain,
        "policy": event.policy_version, "trace": event.trace_id})


def request_owner(engine: Engine, request_id: str) -> str | None:
    """The principal who asked, or None when no audit record names one (yet)."""
    with engine.connect() as conn:
        return conn.execute(text("SELECT principal_id FROM answer_audit WHERE request_id = :r"),
                            {"r": request_id}).scalar()


def record_feedback(conn: Connection, event: FeedbackEvent, principal_id: str,
                    role: str) -> bool:
    """Store verified feedback; False when this feedback_id was stored already."""
    inserted = conn.execute(text("""
        INSERT INTO answer_feedback (feedback_id, request_id, principal_id, role, rating,
                                     correction, comment, channel, created_at)
        VALUES (:fid, :rid, :pid, :role, :rating, :correction, :comment, :channel, :created)
        ON CONFLICT (feedback_id) DO NOTHING RETURNING feedback_id"""), {
        "fid": event.feedback_id, "rid": event.request_id, "pid": principal_id, "role": role,
        "rating": event.rating, "correction": event.correction, "comment": event.comment,
        "channel": event.channel, "created": event.created_at}).scalar()
    return inserted is not None
