"""The PII policy for training data, applied before a snapshot is frozen and when a candidate
example is made from an answer (a library so the fine-tuning worker and the audit recorder
apply the same one).

A model memorizes what it is trained on, and an adapter can be served to principals who may not
see the documents an example came from; so personal data is redacted from every message of
every example before it can reach training. The detector is the one the guardrails use
(:mod:`services.common.pii`, Presidio offline), so an entity redacted at query time is not
learned at training time.

The policy: identifiers that are personal in any context (e-mail, phone, card, IBAN, SSN, IP,
passport, licence and bank numbers) are always redacted; person names and street addresses are
redacted too, except in examples whose privacy class is ``public``, where names are part of the
public record the example teaches (who won, who wrote) and an address is an office's or a
landmark's (a home address learned by a model is as personal as a phone number). Entities
such as dates, places, organisations and URLs are left alone: they carry the facts the model
must learn to cite. Every finding is counted per entity type for the data card, redacted or
not.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from services.common.pii import DEFAULT_MIN_SCORE, find_pii, redact

ALWAYS_REDACT = frozenset({
    "EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "US_SSN", "IP_ADDRESS",
    "US_PASSPORT", "US_DRIVER_LICENSE", "US_BANK_NUMBER", "US_ITIN", "UK_NHS", "CRYPTO",
    "MEDICAL_LICENSE",
})
# Names and street addresses: personal unless the example is public (the policy's ``names``).
PERSONAL_NAMES = frozenset({"PERSON", "ADDRESS"})


@dataclass(frozen=True)
class ScrubPolicy:
    always_redact: frozenset[str] = ALWAYS_REDACT
    names: frozenset[str] = PERSONAL_NAMES
    names_allowed_in: frozenset[str] = frozenset({"public"})
    min_score: float = DEFAULT_MIN_SCORE

    def redacts(self, entity_type: str, privacy_class: str) -> bool:
        if entity_type in self.always_redact:
            return True
        return entity_type in self.names and privacy_class not in self.names_allowed_in

    @property
    def detected(self) -> list[str]:
        return sorted(self.always_redact | self.names)

    def describe(self) -> dict[str, object]:
        return {"always_redact": sorted(self.always_redact), "names": sorted(self.names),
                "names_allowed_in": sorted(self.names_allowed_in), "min_score": self.min_score}


DEFAULT_POLICY = ScrubPolicy()


@dataclass
class ScrubStats:
    """What the scrubber found across a snapshot: the data card's PII section."""

    found: Counter[str] = field(default_factory=Counter)
    redacted: Counter[str] = field(default_factory=Counter)
    examples_changed: int = 0
    # Repeated texts (the same system prompt, the same passage) are analysed once.
    memo: dict[tuple[str, str], tuple[str, list[str], list[str]]] = field(
        default_factory=dict, repr=False)

    def as_dict(self) -> dict[str, object]:
        return {"found": dict(sorted(self.found.items())),
                "redacted": dict(sorted(self.redacted.items())),
                "examples_changed": self.examples_changed}


def scrub_text(text: str, privacy_class: str, stats: ScrubStats,
               policy: ScrubPolicy = DEFAULT_POLICY) -> str:
    key = (text, privacy_class)
    if key not in stats.memo:
        findings = find_pii(text, entities=policy.detected, min_score=policy.min_score)
        chosen = [f for f in findings if policy.redacts(f.entity_type, privacy_class)]
        stats.memo[key] = (redact(text, chosen) if chosen else text,
                            [f.entity_type for f in findings], [f.entity_type for f in chosen])
    result, found, redacted = stats.memo[key]
    stats.found.update(found)
    stats.redacted.update(redacted)
    return result


def scrub_messages(messages: Sequence[dict[str, str]], privacy_class: str, stats: ScrubStats,
                   policy: ScrubPolicy = DEFAULT_POLICY) -> list[dict[str, str]]:
    """Every message's content scrubbed; the role is kept."""
    scrubbed = [{"role": m["role"], "content": scrub_text(m["content"], privacy_class, stats,
                                                          policy)}
                for m in messages]
    if scrubbed != list(messages):
        stats.examples_changed += 1
    return scrubbed
