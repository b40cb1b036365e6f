"""Citations must point at what was actually retrieved.

A model can invent ``[7]`` when the prompt held three sources, and a tampered or stale draft
could carry a citation whose chunk was never in the prompt. Both make an answer look sourced
when it is not. The score is the share of valid references (markers in the answer and citation
entries); the check triggers when it falls below the policy's threshold (1.0: every reference
must be valid).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from services.common.citation_markers import CITATION_MARKER, cited_markers
from services.common.events import Citation, RetrievedChunk
from services.guardrails.checks.results import CheckResult
from services.guardrails.policy import CheckPolicy


def without_invalid(answer: str, citations: Sequence[Citation],
                    retrieved: Sequence[RetrievedChunk]) -> tuple[str, list[Citation]]:
    """The answer without markers no citation has, and only citations of retrieved chunks:
    what the ``redact`` action leaves, so a reader never follows a reference to nothing."""
    retrieved_ids = {chunk.chunk_id for chunk in retrieved}
    kept = [c for c in citations if {c.chunk_id, *c.chunk_ids} <= retrieved_ids]
    numbers = {c.n for c in kept}
    text = CITATION_MARKER.sub(lambda m: m.group(0) if int(m.group(1)) in numbers else "", answer)
    return re.sub(r"[ \t]+([.,;:!?])", r"\1", re.sub(r"[ \t]{2,}", " ", text)).strip(), kept


def check_citations(answer: str, citations: Sequence[Citation],
                    retrieved: Sequence[RetrievedChunk], policy: CheckPolicy) -> CheckResult:
    if not policy.enabled:
        return CheckResult("citations", None, False, "skip", "disabled by policy")
    retrieved_ids = {chunk.chunk_id for chunk in retrieved}
    numbers = {citation.n for citation in citations}
    dangling = [n for n in cited_markers(answer) if n not in numbers]
    foreign = sorted({chunk_id for citation in citations
                      for chunk_id in {citation.chunk_id, *citation.chunk_ids}
                      if chunk_id not in retrieved_ids})
    total = len(cited_markers(answer)) + len(citations)
    if total == 0:
        return CheckResult("citations", 1.0, False, "allow")
    bad_citations = sum(1 for c in citations
                        if not {c.chunk_id, *c.chunk_ids} <= retrieved_ids)
    score = 1.0 - (len(dangling) + bad_citations) / total
    if score >= policy.threshold:
        return CheckResult("citations", score, False, "allow")
    problems = []
    if dangling:
        problems.append("the answer cites " + ", ".join(f"[{n}]" for n in dangling)
                        + " which no retrieved source has")
    if foreign:
        problems.append(f"{len(foreign)} cited chunk(s) were not retrieved for this request")
    return CheckResult("citations", score, True, policy.action, "; ".join(problems),
                       {"dangling_markers": dangling, "unretrieved_chunks": foreign})
