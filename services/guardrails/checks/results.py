"""What a check returns and what a stage concludes from its checks.

Kept as plain data so the stages, the audit trail, ``customllm guardrails check`` and replay
all read the same thing: a check's score, whether it triggered, and the action applied.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from services.common.events import Decision

Stage = Literal["input", "output", "documents"]
Applied = Literal["allow", "flag", "redact", "replace", "block", "skip"]


@dataclass(frozen=True)
class CheckResult:
    """``action`` is what was applied: ``allow`` when the check did not trigger, ``skip`` when it
    could not run (disabled, no model trained) so the audit trail says so instead of staying
    silent."""

    check: str
    score: float | None
    triggered: bool
    action: Applied
    reason: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)

    def decision(self, stage: Stage, policy_version: str) -> Decision:
        return Decision(stage=stage, check=self.check, action=self.action,
                        score=None if self.score is None else round(float(self.score), 4),
                        reason=self.reason or None, policy_version=policy_version)


@dataclass(frozen=True)
class StageVerdict:
    """A stage's outcome: the (possibly redacted) text and every check's result."""

    stage: Stage
    policy_version: str
    text: str
    results: tuple[CheckResult, ...]
    # The encoder's vector of ``text`` when the checks embedded exactly that input (the input
    # stage hands it to the rag worker); not part of the decision.
    text_vector: Any = field(default=None, compare=False, repr=False)

    @property
    def blocked(self) -> bool:
        return any(r.triggered and r.action == "block" for r in self.results)

    @property
    def block_reasons(self) -> list[str]:
        return [f"{r.check}: {r.reason}" for r in self.results
                if r.triggered and r.action == "block"]

    def decisions(self) -> list[Decision]:
        return [r.decision(self.stage, self.policy_version) for r in self.results]
