"""PII in answers: redacted by the documents' privacy class and the principal's clearance.

A policy ``documents.above_clearance: redact_pii`` lets a principal use documents above their
clearance for their content while the personal data those documents hold must not reach them.
So the personal data *of those documents* is what gets redacted: every PII value found in an
above-clearance chunk is redacted wherever it appears in the answer (exact or with different
spacing/punctuation, as "555 0100" for "555-0100"), and so is any PII the detector finds in the
answer that matches one. Entity types in ``always_redact`` (card numbers, SSNs...) are redacted
for everyone whatever their source. Citation texts from above-clearance documents are redacted
the same way, since the reader sees them too.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from services.common.events import Citation, RetrievedChunk
from services.common.pii import PatternSpec, PiiFinding, find_patterns, merge_findings, redact
from services.guardrails.checks.results import CheckResult
from services.guardrails.policy import OutputPiiPolicy, PiiPolicy

FindPii = Callable[..., list[PiiFinding]]
PRIVACY_RANKS = {"public": 0, "internal": 1, "confidential": 2, "restricted": 3}
_NOT_ALNUM = re.compile(r"[^0-9a-z]")
_ALNUM_CHAR = re.compile(r"[0-9a-z]")
MIN_VALUE_CHARS = 4  # shorter "values" (initials, "Al") would redact ordinary words


@dataclass(frozen=True)
class PiiOutcome:
    answer: str
    citations: list[Citation]
    result: CheckResult


def above_clearance(chunk: RetrievedChunk, clearance: str) -> bool:
    return PRIVACY_RANKS.get(chunk.privacy_class, 3) > PRIVACY_RANKS.get(clearance, 0)


def with_policy_patterns(find: FindPii, policy: PiiPolicy) -> FindPii:
    """The detector plus the policy's own identifier patterns (employee ids...), so an answer
    is checked for the same kinds of personal data as a question."""
    if not policy.patterns:
        return find
    specs = [PatternSpec(name, spec.pattern, spec.score) for name, spec in policy.patterns.items()]

    def find_with_patterns(text: str, *args: object, **kwargs: object) -> list[PiiFinding]:
        return merge_findings(find(text, *args, **kwargs), find_patterns(text, specs))

    return find_with_patterns


def _key(value: str) -> str:
    return _NOT_ALNUM.sub("", value.lower())


def _protected_values(chunks: Sequence[RetrievedChunk], policy: OutputPiiPolicy,
                      find: FindPii) -> dict[str, str]:
    """Normalized value → entity type, for PII in above-clearance chunks the policy protects."""
    values: dict[str, str] = {}
    for chunk in chunks:
        for finding in find(chunk.text, min_score=policy.min_score):
            if policy.action_for(finding.entity_type) == "allow":
                continue
            key = _key(finding.text_in(chunk.text))
            if len(key) >= MIN_VALUE_CHARS:
                values.setdefault(key, finding.entity_type)
    return values


def _occurrences(text: str, values: dict[str, str]) -> list[PiiFinding]:
    """Spans of ``text`` whose alphanumerics spell a protected value, separators ignored."""
    if not values:
        return []
    positions = [i for i, ch in enumerate(text) if _ALNUM_CHAR.fullmatch(ch.lower())]
    folded = "".join(text[i].lower() for i in positions)
    found = []
    for key, entity in values.items():
        start = folded.find(key)
        while start != -1:
            first, last = positions[start], positions[start + len(key) - 1]
            found.append(PiiFinding(entity, first, last + 1, 1.0))
            start = folded.find(key, start + 1)
    return found


def _redactions(text: str, protected: dict[str, str], policy: OutputPiiPolicy,
                find: FindPii, redact_all: bool) -> list[PiiFinding]:
    """What to redact in ``text``: protected values, always-redact types, and (for text that
    itself comes from an above-clearance document) every PII the policy does not allow."""
    chosen = _occurrences(text, protected)
    for finding in find(text, min_score=policy.min_score):
        action = policy.action_for(finding.entity_type)
        if (finding.entity_type in policy.always_redact
                or (redact_all and action != "allow")
                or (action != "allow" and _key(finding.text_in(text)) in protected)):
            chosen.append(finding)
    return _distinct(chosen)


def _distinct(findings: list[PiiFinding]) -> list[PiiFinding]:
    """One finding per redacted span: the longest (then highest-scoring) of overlapping ones."""
    kept: list[PiiFinding] = []
    for finding in sorted(findings, key=lambda f: (-(f.end - f.start), -f.score, f.start)):
        if all(finding.end <= k.start or finding.start >= k.end for k in kept):
            kept.append(finding)
    return sorted(kept, key=lambda f: f.start)


def redact_output(answer: str, citations: Sequence[Citation], retrieved: Sequence[RetrievedChunk],
                  clearance: str, policy: OutputPiiPolicy, find: FindPii) -> PiiOutcome:
    """The answer and citations with protected PII redacted, and the check's result.

    Score: the highest detector score among what was redacted (1.0 for a protected value
    matched literally), 0.0 when nothing was."""
    if not policy.enabled:
        return PiiOutcome(answer, list(citations),
                          CheckResult("output_pii", None, False, "skip", "disabled by policy"))
    restricted = [c for c in retrieved if above_clearance(c, clearance)]
    restricted_ids = {c.chunk_id for c in restricted}
    protected = _protected_values(restricted, policy, find)
    answer_hits = _redactions(answer, protected, policy, find, redact_all=False)
    new_citations, citation_hits = [], 0
    for citation in citations:
        if not citation.text:
            new_citations.append(citation)
            continue
        from_restricted = bool({citation.chunk_id, *citation.chunk_ids} & restricted_ids)
        hits = _redactions(citation.text, protected, policy, find, redact_all=from_restricted)
        citation_hits += len(hits)
        new_citations.append(citation.model_copy(update={"text": redact(citation.text, hits)})
                             if hits else citation)
    everything = answer_hits
    if not everything and not citation_hits:
        return PiiOutcome(answer, new_citations, CheckResult("output_pii", 0.0, False, "allow"))
    types = sorted({f.entity_type for f in answer_hits})
    blocking = [t for t in types if policy.action_for(t) == "block"
                and t not in policy.always_redact]
    score = max((f.score for f in answer_hits), default=1.0)
    action = "block" if blocking else "redact"
    reason = (f"redacted {len(answer_hits)} PII value(s) in the answer "
              f"({', '.join(types) or 'none'}) and {citation_hits} in citation texts; source: "
              f"{len(restricted)} retrieved chunk(s) above the principal's clearance "
              f"'{clearance}'")
    if blocking:
        reason = f"policy blocks answers containing {', '.join(blocking)}; " + reason
    return PiiOutcome(redact(answer, answer_hits), new_citations,
                      CheckResult("output_pii", score, True, action, reason,
                                  {"entities": types, "citation_redactions": citation_hits}))
