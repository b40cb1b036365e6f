"""The ``[n]`` citation markers of an answer, read the same way wherever answers are checked
(the output guardrail, the supervision pairs taken from the system's own answers)."""

from __future__ import annotations

import re

CITATION_MARKER = re.compile(r"\[(\d{1,3})\]")


def cited_markers(answer: str) -> list[int]:
    """Every ``[n]`` of the answer once, in first-seen order."""
    seen: list[int] = []
    for match in CITATION_MARKER.finditer(answer):
        n = int(match.group(1))
        if n not in seen:
            seen.append(n)
    return seen
