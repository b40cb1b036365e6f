"""Hate speech: the learned head of ``services.guardrails.hate``, with its own policy action
(distinct from ``toxicity``, which scores profanity and insults)."""

from __future__ import annotations

from services.common.linear_head import LinearHead
from services.guardrails import hate
from services.guardrails.attack_corpus import EmbedFn
from services.guardrails.checks.results import CheckResult
from services.guardrails.policy import ClassifierPolicy

CHECK = "hate"


def check_hate(text: str, policy: ClassifierPolicy, head: LinearHead | None,
               embed: EmbedFn | None) -> CheckResult:
    if not policy.enabled:
        return CheckResult(CHECK, None, False, "skip", "disabled by policy")
    if head is None:
        return CheckResult(CHECK, None, False, "skip", "no hate model found")
    if embed is None:
        return CheckResult(CHECK, None, False, "skip", "no sentence encoder loaded")
    threshold = policy.threshold if policy.threshold is not None else head.threshold
    score = round(float(hate.predict_proba(head, [text], embed)[0]), 4)
    if score < threshold:
        return CheckResult(CHECK, score, False, "allow", "", {"threshold": threshold})
    return CheckResult(CHECK, score, True, policy.action,
                       f"hateful content (p={score:.2f} ≥ {threshold:.2f})",
                       {"threshold": threshold})
