"""PII in a question, per policy: each entity type is redacted, blocked, flagged or allowed.

Runs last in the input stage, so every other detector saw the question as the user wrote it;
what goes on to retrieval and the model is the redacted text. The result names entity types
and counts, never the values: the audit trail must not become a copy of the PII it removed.
"""

from __future__ import annotations

from collections import Counter

from services.common.pii import PatternSpec, PiiFinding, find_patterns, redact
from services.guardrails.checks.pii_detect import find_pii_fast, joined, ner_entity_types
from services.guardrails.checks.results import Applied, CheckResult
from services.guardrails.policy import PiiPolicy

CHECK = "pii"
_SEVERITY: dict[str, int] = {"allow": 0, "flag": 1, "redact": 2, "block": 3}


def check_pii(text: str, policy: PiiPolicy,
              findings: list[PiiFinding] | None = None) -> tuple[CheckResult, str]:
    """(result, text with the entities the policy redacts replaced by ``<TYPE>``)."""
    if not policy.enabled:
        return CheckResult(CHECK, None, False, "skip", "disabled by policy"), text
    raw = findings if findings is not None else find_input_pii(text, policy)
    found = acted_on(raw, policy)
    by_action: dict[str, Counter[str]] = {a: Counter() for a in _SEVERITY}
    for finding in found:
        by_action[policy.action_for(finding.entity_type)][finding.entity_type] += 1
    to_redact = [f for f in found if policy.action_for(f.entity_type) in ("redact", "block")]
    redacted = redact(text, to_redact) if to_redact else text
    score = max((f.score for f in found), default=0.0)
    details = {action: dict(counts) for action, counts in by_action.items() if counts}
    worst: Applied = "allow"
    for action in ("block", "redact", "flag"):
        if by_action[action]:
            worst = action  # type: ignore[assignment]
            break
    if worst == "allow":
        return CheckResult(CHECK, round(score, 4), False, "allow", "", details), text
    reason = {
        "block": "personal data the policy does not accept: " + _names(by_action["block"]),
        "redact": "personal data redacted: " + _names(by_action["redact"]),
        "flag": "personal data present: " + _names(by_action["flag"]),
    }[worst]
    return CheckResult(CHECK, round(score, 4), True, worst, reason, details), redacted


def find_input_pii(text: str, policy: PiiPolicy) -> list[PiiFinding]:
    """Presidio's recognizers (plus the shared credential/address/phone patterns and the
    guardrails' own, ``pii_recognizers``) and the policy's own patterns. Findings of different
    types may overlap; ``acted_on`` decides."""
    specs = [PatternSpec(name, p.pattern, p.score) for name, p in policy.patterns.items()]
    return sorted([*find_pii_fast(text, min_score=policy.min_score, ner=needs_ner(policy)),
                   *find_patterns(text, specs)], key=lambda f: (f.start, f.end))


def needs_ner(policy: PiiPolicy) -> bool:
    """Whether the named-entity model can find anything this policy acts on; the packaged
    input policy allows every type it yields (names, places, organisations, dates), so its
    pass is skipped there, and a domain policy that redacts names gets it back."""
    return any(policy.action_for(entity) != "allow" for entity in ner_entity_types())


def acted_on(findings: list[PiiFinding], policy: PiiPolicy) -> list[PiiFinding]:
    """The findings the policy does not allow, overlapping ones joined: the joined span is
    typed after the most severe action among them (then the highest score), so an address
    that holds an allowed date is still redacted whole."""
    kept = [f for f in findings if policy.action_for(f.entity_type) != "allow"]
    return joined(kept, lambda f: (_SEVERITY[policy.action_for(f.entity_type)], f.score,
                                   f.end - f.start))


def _names(counts: Counter[str]) -> str:
    return ", ".join(f"{name} ×{n}" if n > 1 else name for name, n in sorted(counts.items()))
