"""Layer 3 of prompt-injection detection: the learned head over MiniLM embeddings (the
packaged one, or the one ``customllm guardrails train`` wrote). The threshold is the policy's
when it sets one, else the head's own calibrated operating point. Without an encoder (e.g.
a stage built with no embedding model) the check is skipped and the audit trail says why."""

from __future__ import annotations

from services.common.linear_head import LinearHead
from services.guardrails import classifier as classifier_mod
from services.guardrails.attack_corpus import EmbedFn
from services.guardrails.checks.results import CheckResult
from services.guardrails.policy import ClassifierPolicy

CHECK = "injection_classifier"
# Below this many words the head has too little to go on: short benign questions ("question
# number 12", "What is the answer?") scored 0.80-0.90 and were refused in the end-to-end tests.
# Short overrides ("ignore previous instructions") are what the rules layer catches.
MIN_WORDS = 6


def check_injection_classifier(text: str, policy: ClassifierPolicy,
                               classifier: LinearHead | None,
                               embed: EmbedFn | None = None) -> CheckResult:
    if not policy.enabled:
        return CheckResult(CHECK, None, False, "skip", "disabled by policy")
    if classifier is None:
        return CheckResult(CHECK, None, False, "skip",
                           "no classifier (customllm guardrails train --data FILE)")
    if embed is None:
        return CheckResult(CHECK, None, False, "skip", "no sentence encoder loaded")
    threshold = policy.threshold if policy.threshold is not None else classifier.threshold
    score = round(classifier_mod.score(classifier, text, embed), 4)
    details = {"trained_at": classifier.meta.get("trained_at"), "threshold": threshold,
               "data_sha256": str(classifier.meta.get("data_sha256", ""))[:12]}
    if score < threshold:
        return CheckResult(CHECK, score, False, "allow", "", details)
    if len(text.split()) < MIN_WORDS:
        return CheckResult(CHECK, score, False, "allow",
                           f"below {MIN_WORDS} words: left to the rules layer", details)
    return CheckResult(CHECK, score, True, policy.action,
                       f"classifier: likely prompt injection (p={score:.2f} ≥ "
                       f"{threshold:.2f})", details)
