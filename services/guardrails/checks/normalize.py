"""Normalization and length: the first things the input stage records.

Normalization itself never blocks; what it removed (invisible characters, bidi overrides) is
flagged so the audit trail shows that the text a user typed is not the text that went on.
The length check enforces ``input.max_chars``: refuse, or cut and go on, per policy.
"""

from __future__ import annotations

from services.common.text_normalize import Normalized
from services.guardrails.checks.results import CheckResult
from services.guardrails.policy import InputPolicy

NORMALIZE = "normalize"
LENGTH = "length"


def normalize_result(normalized: Normalized) -> CheckResult:
    details = {"removed_chars": normalized.removed_chars, "changed": normalized.changed}
    if normalized.removed_chars:
        return CheckResult(NORMALIZE, None, True, "flag",
                           f"{normalized.removed_chars} invisible or control characters removed",
                           details)
    return CheckResult(NORMALIZE, None, False, "allow", "", details)


def length_result(normalized: Normalized, policy: InputPolicy) -> CheckResult:
    """Score is the length as a fraction of the limit (capped at 1 when within it is false)."""
    chars = normalized.original_chars - normalized.removed_chars
    score = round(min(chars / policy.max_chars, 1.0), 4)
    details = {"chars": chars, "max_chars": policy.max_chars}
    if chars <= policy.max_chars:
        return CheckResult(LENGTH, score, False, "allow", "", details)
    if policy.over_length == "truncate":
        return CheckResult(LENGTH, score, True, "redact",
                           f"question cut to {policy.max_chars} characters (was {chars})", details)
    return CheckResult(LENGTH, score, True, "block",
                       f"question too long ({chars} characters, limit {policy.max_chars})",
                       details)
