"""The audit trail: every guardrail decision as one event on ``guardrails.events``.

Keyed by request_id, so one request's decisions stay in order on one partition. The reply
carries the same decisions, but replies are short-lived and go only to the requester; this
topic is what a compliance review reads (90 days) and what ``customllm guardrails replay``
compares a candidate policy against.
"""

from __future__ import annotations

from opentelemetry import trace

from services.common.events import GuardrailEvent
from services.guardrails.checks.results import StageVerdict


def current_trace_id() -> str | None:
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


def events_for(request_id: str, verdict: StageVerdict, principal_id: str | None,
               domain: str | None, trace_id: str | None = None) -> list[GuardrailEvent]:
    """One event per check of the verdict (skipped checks included: an auditor must see that
    a check did not run, not infer it from silence)."""
    return [
        GuardrailEvent(
            event_id=f"{request_id}:{verdict.stage}:{result.check}", request_id=request_id,
            stage=verdict.stage, check=result.check, action=result.action,
            triggered=result.triggered,
            score=None if result.score is None else round(float(result.score), 4),
            reason=(result.reason or None) and result.reason[:2000],
            policy_version=verdict.policy_version, principal_id=principal_id, domain=domain,
            trace_id=trace_id)
        for result in verdict.results
    ]
