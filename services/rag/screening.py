"""The rag worker's side of the guardrail contract: how a request's ``Screening`` directives
change retrieval, the prompt and the draft, as pure functions.

* ``marked_chunks``: chunks the ingest scan marked (injection score ≥ threshold) are dropped in
  SQL ("exclude"), kept but rendered as fenced untrusted data ("fence"), or used as is ("allow").
* ``above_clearance: redact_pii``: documents above the principal's clearance become retrievable
  (ACL groups still enforced); the output stage redacts the personal data they hold.
* a question the input stage redacted is never answered from, or kept in, the answer cache.
* the draft carries ``evidence`` (principal, directives, the chunks the prompt held with their
  privacy class and text) so the output stage can check the answer against them.

A request without screening (the worker used directly, e.g. by the evaluation harness on its
own) keeps the behaviour from before the guardrails: no exclusion, no fencing, clearance only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from services.common.events import DraftEvidence, Principal, QuestionVector, RagRequest, Screening
from services.common.events import RetrievedChunk as EvidenceChunk
from services.common.prompting.context_item import ContextItem
from services.rag.access import RESTRICTED_RANK, AccessScope
from services.rag.context import fence_marked
from services.rag.retrieval import RetrievedChunk


def take_question_vector(request: RagRequest) -> tuple[QuestionVector | None, RagRequest]:
    """The input stage's vector of the question, and the request without it: the vector serves
    this worker's search only, so the draft's evidence and the cache keep the directives alone
    (the output stage has no use for 2 KB of floats)."""
    screening = request.screening
    if screening is None or screening.question_vector is None:
        return None, request
    return screening.question_vector, request.model_copy(update={
        "screening": screening.model_copy(update={"question_vector": None})})


def cache_directives(screening: Screening | None) -> dict[str, Any] | None:
    """What of the screening changes the answer, for the cache key. Never the canary: it is
    fresh per request and would make every request a miss."""
    if screening is None:
        return None
    return {"policy_version": screening.policy_version,
            "marked_chunks": screening.marked_chunks,
            "injection_threshold": screening.injection_threshold,
            "above_clearance": screening.above_clearance}


def may_cache(screening: Screening | None) -> bool:
    """Whether the answer cache may serve or keep this question. Not when the input stage
    changed it: redaction makes different questions one text ("When was <PERSON> hired?" for
    every name), so a cached answer to one would be served for all of them."""
    return screening is None or not screening.question_changed


def widen_scope(scope: AccessScope, screening: Screening | None) -> AccessScope:
    if screening is not None and screening.above_clearance == "redact_pii":
        return replace(scope, max_rank=RESTRICTED_RANK)
    return scope


def injection_cutoff(screening: Screening | None) -> float | None:
    if screening is not None and screening.marked_chunks == "exclude":
        return screening.injection_threshold
    return None


def fence(items: list[ContextItem], chunks: Sequence[RetrievedChunk],
          screening: Screening | None) -> list[ContextItem]:
    if screening is None or screening.marked_chunks != "fence":
        return items
    return fence_marked(items, chunks, screening.injection_threshold)


def evidence(principal: Principal, screening: Screening | None,
             chunks: Sequence[RetrievedChunk], items: Sequence[ContextItem]) -> DraftEvidence:
    """The chunks the prompt held (those of the context items), in citation order."""
    by_id = {chunk.chunk_id: chunk for chunk in chunks}
    retrieved = [
        EvidenceChunk(chunk_id=chunk_id, doc_id=by_id[chunk_id].doc_id,
                      privacy_class=by_id[chunk_id].privacy_class,  # type: ignore[arg-type]
                      text=by_id[chunk_id].text,
                      injection_score=by_id[chunk_id].injection_score, fenced=item.fenced)
        for item in items for chunk_id in item.chunk_ids if chunk_id in by_id
    ]
    return DraftEvidence(principal=principal, screening=screening, retrieved=retrieved)


def leaked_canary(answer: str, screening: Screening | None) -> bool:
    """A reply that repeats the canary is never cached (the output stage blocks it anyway)."""
    return bool(screening and screening.canary
                and screening.canary.lower() in answer.lower())
