"""Candidate supervision examples from answers that went wrong (issue 17, the closed loop).

Three signals turn an answer into a *pending* example in the review queue (``sft_examples``):

* a user's **correction**: the question with the corrected answer as the target
  (tags ``feedback``, ``correction``);
* a **negative rating** without a correction: the question with the answer that was judged
  wrong (tags ``feedback``, ``needs-correction``);
* a **grounding** check that triggered on the answer (tags ``grounding``, ``needs-correction``).

A ``needs-correction`` example can only be edited (the edit is the approved example) or
rejected, never approved as it stands: it holds an answer somebody flagged as wrong.

Each candidate carries its evidence in ``lineage`` (request id, who rated it and how, the
original answer, the chunks it was answered from with their document versions, template,
adapter); its privacy class is the highest among those chunks' documents, and its licence that
of those documents. Messages are PII-scrubbed with the training policy
(:mod:`services.common.pii_scrub`) before they are stored, so the review queue never shows an
SME personal data the snapshot would remove anyway. The example id is the content hash of the
scrubbed messages, so a redelivered feedback or a second identical correction adds nothing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection

from services.common.identity import CLEARANCES
from services.common.supervision_review import NEEDS_CORRECTION, content_hash

GROUNDING_CHECK = "grounding"
GROUNDING_ACTIONS = frozenset({"flag", "replace", "block"})


@dataclass(frozen=True)
class Candidate:
    messages: list[dict[str, str]]
    source: str
    privacy_class: str
    license: str | None
    tags: list[str]
    lineage: dict[str, Any] = field(default_factory=dict)


def highest_privacy(classes: list[str | None]) -> str:
    """The most restrictive class among the cited documents; ``internal`` when none is known
    (an answer is never less private than the platform's default)."""
    ranks = [CLEARANCES.index(c) for c in classes if c in CLEARANCES]
    return CLEARANCES[max(ranks)] if ranks else "internal"


def _evidence(audit: Any) -> list[dict[str, Any]]:
    return [{k: chunk.get(k) for k in ("chunk_id", "doc_id", "doc_version", "privacy_class")}
            for chunk in (audit.retrieved or [])]


def build(audit: Any, *, origin: str, target: str | None, details: dict[str, Any],
          licenses: list[str]) -> Candidate | None:
    """A candidate from an audit record, or None when there is no question and answer to
    learn from (a request blocked before retrieval)."""
    if not audit.question or not (target or audit.answer):
        return None
    evidence = _evidence(audit)
    corrected = target is not None
    tags = [origin, "correction" if corrected else NEEDS_CORRECTION]
    lineage = {"request_id": audit.request_id, "origin": origin, "asked_by": audit.principal_id,
               "original_answer": audit.answer, "cited": evidence,
               "template_version": audit.template_version, "model": audit.model,
               "adapter": audit.adapter, "adapter_version": audit.adapter_version, **details}
    distinct = sorted(set(licenses))
    return Candidate(
        messages=[{"role": "user", "content": audit.question},
                  {"role": "assistant", "content": target if corrected else audit.answer}],
        source=origin, privacy_class=highest_privacy([c["privacy_class"] for c in evidence]),
        license=distinct[0] if len(distinct) == 1 else ("; ".join(distinct) or None),
        tags=tags, lineage=lineage)


def cited_licenses(conn: Connection, audit: Any) -> list[str]:
    doc_ids = sorted({c.get("doc_id") for c in (audit.retrieved or []) if c.get("doc_id")})
    if not doc_ids:
        return []
    return [row for row in conn.execute(
        text("SELECT license FROM documents WHERE doc_id = ANY(:ids) AND license IS NOT NULL"),
        {"ids": doc_ids}).scalars()]


def propose(conn: Connection, candidate: Candidate) -> str | None:
    """Scrub and insert as pending; the example id, or None when it was there already."""
    from services.common.pii_scrub import ScrubStats, scrub_messages

    messages = scrub_messages(candidate.messages, candidate.privacy_class, ScrubStats())
    example_id = content_hash(messages)
    inserted = conn.execute(text("""
        INSERT INTO sft_examples (example_id, messages, source, lineage, license, privacy_class,
                                  tags)
        VALUES (:id, CAST(:messages AS jsonb), :source, CAST(:lineage AS jsonb), :license,
                :privacy, :tags)
        ON CONFLICT (example_id) DO NOTHING RETURNING example_id"""), {
        "id": example_id, "messages": json.dumps(messages), "source": candidate.source,
        "lineage": json.dumps(candidate.lineage, default=str), "license": candidate.license,
        "privacy": candidate.privacy_class, "tags": candidate.tags}).scalar()
    return inserted


def audit_row(conn: Connection, request_id: str) -> Any:
    return conn.execute(text("SELECT * FROM answer_audit WHERE request_id = :r"),
                        {"r": request_id}).first()


def from_feedback(conn: Connection, request_id: str, *, feedback_id: str, principal_id: str,
                  rating: int, correction: str | None, comment: str | None) -> str | None:
    """A candidate for negative or corrected feedback; None for praise or when nothing new."""
    if rating >= 0 and not correction:
        return None
    audit = audit_row(conn, request_id)
    if audit is None:
        return None
    candidate = build(audit, origin="feedback", target=correction,
                      details={"feedback_id": feedback_id, "rated_by": principal_id,
                               "rating": rating, "comment": comment},
                      licenses=cited_licenses(conn, audit))
    return propose(conn, candidate) if candidate else None


# A grounding decision that makes its answer a candidate.
_UNGROUNDED = "check_name = :c AND triggered AND action = ANY(:a)"
_UNGROUNDED_PARAMS = {"c": GROUNDING_CHECK, "a": sorted(GROUNDING_ACTIONS)}


def ungrounded(conn: Connection, request_ids: Sequence[str]) -> list[str]:
    """Which of ``request_ids`` have such a decision on record: the only ones
    :func:`from_grounding` can make a candidate of, found in one query for a whole batch."""
    if not request_ids:
        return []
    return list(conn.execute(text(
        f"SELECT DISTINCT request_id FROM guardrail_decisions WHERE request_id = ANY(:r) AND "
        f"{_UNGROUNDED}"), {"r": list(request_ids), **_UNGROUNDED_PARAMS}).scalars())


def from_grounding(conn: Connection, request_id: str) -> str | None:
    """A candidate once an answer whose grounding check triggered is complete on record
    (its decision, question and answer may arrive in any order)."""
    decision = conn.execute(text(
        f"SELECT score, action, reason FROM guardrail_decisions WHERE request_id = :r AND "
        f"{_UNGROUNDED} LIMIT 1"), {"r": request_id, **_UNGROUNDED_PARAMS}).first()
    if decision is None:
        return None
    audit = audit_row(conn, request_id)
    if audit is None:
        return None
    candidate = build(audit, origin="grounding", target=None,
                      details={"grounding_score": decision.score, "action": decision.action,
                               "reason": decision.reason},
                      licenses=cited_licenses(conn, audit))
    return propose(conn, candidate) if candidate else None
