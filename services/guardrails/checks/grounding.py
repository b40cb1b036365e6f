"""Grounding: every sentence of the answer must be supported by the context it cites.

Reuses the evaluation harness's definition (``services.common.grounding.faithfulness``) so what the
guardrail enforces online is what the benchmarks measure offline: a sentence is supported when
its embedding is close to a context sentence or most of its content words occur in one, and
every number it states occurs in the context. An optional LLM judge (policy
``output.grounding.judge``) grades the sentences instead; when the judge is unusable the
heuristic verdict stands and the reason says so.

Abstentions (the template's "don't know") and refusals assert nothing, so they are not checked.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from services.common.grounding.faithfulness import claim_support, judge_faithfulness, split_claims
from services.common.grounding.text import (
    is_abstention,
    split_sentences,
    strip_citation_markers,
    tokens,
)
from services.guardrails.checks.results import CheckResult
from services.guardrails.policy import GroundingPolicy

Embed = Callable[[list[str]], np.ndarray]
Ask = Callable[[str], str]


def memo_embed(embed: Embed) -> Embed:
    """``embed`` with a per-call-site cache: claims are checked one at a time against the same
    context sentences, which are then embedded once."""
    cache: dict[str, np.ndarray] = {}

    def cached(texts: list[str]) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if t not in cache]
        if missing:
            for text, vector in zip(missing, embed(missing), strict=True):
                cache[text] = np.asarray(vector)
        return np.stack([cache[t] for t in texts])

    return cached


def check_grounding(answer: str, contexts: Sequence[str], policy: GroundingPolicy,
                    embed: Embed | None, no_answer: str | None = None,
                    judge: Ask | None = None) -> CheckResult:
    """Score = supported sentences / sentences; triggered below ``policy.min_supported``."""
    if not policy.enabled:
        return CheckResult("grounding", None, False, "skip", "disabled by policy")
    if not answer.strip() or is_abstention(answer, no_answer):
        return CheckResult("grounding", None, False, "skip", "abstention: nothing asserted")
    claims = split_claims(answer)
    if not claims:
        return CheckResult("grounding", None, False, "skip", "no checkable sentence")
    contexts = [c for c in contexts if c and c.strip()]
    embedder = memo_embed(embed) if embed is not None else None
    if embedder is not None and contexts:
        # One batch for every claim and context sentence; the per-claim calls below then hit
        # the memo instead of running the model once per sentence.
        embedder([*claims, *(s for c in contexts
                             for s in split_sentences(strip_citation_markers(c)) if tokens(s))])
    supports = [claim_support(claim, contexts, embedder, policy.similarity,
                              policy.lexical_overlap) for claim in claims]
    unsupported = [c for c, s in zip(claims, supports, strict=True) if not s.supported]
    score = (len(claims) - len(unsupported)) / len(claims)
    method = "embedding+lexical"
    if policy.judge and judge is not None and contexts:
        judged = judge_faithfulness(answer, contexts, judge, no_answer_text=no_answer)
        if judged is None:
            method = "embedding+lexical (judge unavailable)"
        else:
            score, method = judged, "judge"
    details = {"sentences": len(claims), "unsupported": unsupported, "method": method}
    if score >= policy.min_supported:
        return CheckResult("grounding", score, False, "allow", details=details)
    reason = (f"{len(claims) - round(score * len(claims))} of {len(claims)} sentence(s) not "
              f"supported by the cited context ({method})")
    if not contexts:
        reason = "the answer cites no context to support it"
    return CheckResult("grounding", score, True, policy.action, reason, details)
