"""Layer 1 of prompt-injection detection: rules and heuristics (microseconds, no model)."""

from __future__ import annotations

from services.common.injection import injection_score
from services.guardrails.checks.results import CheckResult
from services.guardrails.policy import CheckPolicy

CHECK = "injection_rules"


def check_injection_rules(text: str, policy: CheckPolicy) -> CheckResult:
    if not policy.enabled:
        return CheckResult(CHECK, None, False, "skip", "disabled by policy")
    result = injection_score(text)
    triggered = result.score >= policy.threshold
    details = {"rules": result.rules, "views": result.views}
    if not triggered:
        return CheckResult(CHECK, result.score, False, "allow", "", details)
    reason = (f"prompt injection pattern ({', '.join(result.rules)}; score {result.score:.2f} "
              f"≥ {policy.threshold:.2f})")
    return CheckResult(CHECK, result.score, True, policy.action, reason, details)
