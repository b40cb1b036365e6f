"""Layer 3 of prompt-injection detection: the classifier the project trains on the user's
data (``customllm guardrails train``). Without a trained model the check is skipped, and the
audit trail says why, rather than passing silently."""

from __future__ import annotations

from services.guardrails.checks.results import CheckResult
from services.guardrails.classifier import InjectionClassifier
from services.guardrails.policy import ClassifierPolicy

CHECK = "injection_classifier"


def check_injection_classifier(text: str, policy: ClassifierPolicy,
                               classifier: InjectionClassifier | None) -> CheckResult:
    if not policy.enabled:
        return CheckResult(CHECK, None, False, "skip", "disabled by policy")
    if classifier is None:
        return CheckResult(CHECK, None, False, "skip",
                           "no classifier trained (customllm guardrails train --data FILE)")
    score = round(classifier.score(text), 4)
    details = {"trained_at": classifier.meta.get("trained_at"),
               "data_sha256": str(classifier.meta.get("data_sha256", ""))[:12]}
    if score < policy.threshold:
        return CheckResult(CHECK, score, False, "allow", "", details)
    return CheckResult(CHECK, score, True, policy.action,
                       f"classifier: likely prompt injection (p={score:.2f} ≥ "
                       f"{policy.threshold:.2f})", details)
