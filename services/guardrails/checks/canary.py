"""Canary tokens: a per-request secret in the system prompt whose appearance in an answer
means the model repeated its instructions (system-prompt leakage).

A fresh random canary per request (never cached, never reused) means a leak cannot be staged
by asking for a token learnt earlier, and a match cannot be a coincidence. The check looks for
the token as written, case-folded, with separators inserted ("c n r y - ..."), reversed, and
base64-encoded, because a model asked to "spell out" or "encode" its instructions leaks it in
those forms.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets

from services.guardrails.checks.results import CheckResult
from services.guardrails.policy import CheckPolicy

CANARY_PREFIX = "cnry"
_B64_RUN = re.compile(r"[A-Za-z0-9+/=_-]{12,}")
_NOT_ALNUM = re.compile(r"[^0-9a-z]")


def new_canary() -> str:
    """A token no answer contains by chance: prefix + 64 random bits in hex."""
    return f"{CANARY_PREFIX}-{secrets.token_hex(8)}"


def leak_form(text: str, canary: str) -> str | None:
    """How the canary appears in ``text`` (exact, casefold, spaced, reversed, base64), or
    ``None``."""
    if not canary or not text:
        return None
    if canary in text:
        return "exact"
    folded = text.casefold()
    if canary.casefold() in folded:
        return "casefold"
    compact_text, compact_canary = _NOT_ALNUM.sub("", folded), _NOT_ALNUM.sub("", canary.casefold())
    if compact_canary and compact_canary in compact_text:
        return "spaced"
    if compact_canary and compact_canary[::-1] in compact_text:
        return "reversed"
    if _in_base64(text, canary):
        return "base64"
    return None


def _in_base64(text: str, canary: str) -> bool:
    encoded = base64.b64encode(canary.encode()).decode().rstrip("=")
    if encoded[:-2] and encoded[:-2] in text:  # the last characters depend on what follows
        return True
    for run in _B64_RUN.findall(text):
        for alphabet in (None, b"-_"):
            padded = run + "=" * (-len(run) % 4)
            try:
                decoded = base64.b64decode(padded, altchars=alphabet, validate=False)
            except (binascii.Error, ValueError):
                continue
            if canary.encode() in decoded or canary.casefold().encode() in decoded.lower():
                return True
    return False


def check_canary(answer: str, canary: str | None, policy: CheckPolicy) -> CheckResult:
    """Score 1.0 when the canary leaked (in any form), else 0.0."""
    if not policy.enabled:
        return CheckResult("canary", None, False, "skip", "disabled by policy")
    if not canary:
        return CheckResult("canary", None, False, "skip", "no canary in the request")
    form = leak_form(answer, canary)
    score = 1.0 if form else 0.0
    triggered = score >= policy.threshold
    if not triggered:
        return CheckResult("canary", score, False, "allow")
    return CheckResult("canary", score, True, policy.action,
                       f"the system prompt's canary token appears in the answer ({form})",
                       {"form": form})
