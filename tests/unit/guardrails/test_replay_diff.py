"""The replay diff on hand-written recorded and re-scored decisions."""

from datetime import UTC, datetime

import pytest

from services.common.events import GuardrailEvent
from services.guardrails.checks.results import CheckResult, StageVerdict
from services.guardrails.replay import (
    Outcome,
    ReplayError,
    ReplayReport,
    diff,
    parse_when,
    recorded_outcomes,
    verdict_outcomes,
)

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
ALLOW, BLOCK = Outcome("allow", False, 0.1), Outcome("block", True, 0.9)
REDACT, NONE = Outcome("redact", True, 0.85), Outcome("allow", False, 0.0)


def _report() -> ReplayReport:
    return ReplayReport(since=NOW, until=None, policy="candidate")


def test_parse_when():
    assert parse_when("2h", NOW) == datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
    assert parse_when("30m", NOW).minute == 30
    assert parse_when("2026-11-26T09:00", NOW) == datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
    with pytest.raises(ReplayError):
        parse_when("yesterday", NOW)


def test_recorded_outcomes_keep_the_last_copy_of_a_redelivered_event():
    def event(action: str) -> GuardrailEvent:
        return GuardrailEvent(event_id="r1:input:toxicity", request_id="r1", stage="input",
                              check="toxicity", action=action, triggered=action == "block",
                              score=0.5, policy_version="p")

    assert recorded_outcomes([event("allow"), event("block")]) == {
        "r1": {("input", "toxicity"): Outcome("block", True, 0.5)}}


def test_verdict_outcomes_round_scores_like_the_audit_trail():
    verdict = StageVerdict("input", "p", "q", (CheckResult("toxicity", 0.123456, False,
                                                           "allow"),))
    assert verdict_outcomes([verdict]) == {("input", "toxicity"): Outcome("allow", False,
                                                                          0.1235)}


def test_diff_lists_exactly_the_requests_whose_decision_changes():
    old = {
        "same": {("input", "toxicity"): ALLOW, ("output", "grounding"): ALLOW},
        "tightened": {("input", "toxicity"): ALLOW, ("output", "canary"): NONE},
        "loosened": {("input", "injection_rules"): BLOCK},
        "redaction": {("input", "pii"): NONE, ("output", "output_pii"): NONE},
        "score_moves": {("input", "toxicity"): Outcome("allow", False, 0.2)},
    }
    new = {
        "same": {("input", "toxicity"): ALLOW, ("output", "grounding"): ALLOW},
        "tightened": {("input", "toxicity"): BLOCK},  # blocked at input: no output stage now
        "loosened": {("input", "injection_rules"): ALLOW},
        "redaction": {("input", "pii"): REDACT, ("output", "output_pii"): NONE},
        "score_moves": {("input", "toxicity"): Outcome("allow", False, 0.4)},
        "never_audited": {("input", "toxicity"): ALLOW},
    }
    report = diff(old, new, _report(), output_missing=["loosened"])
    assert report.changed_requests == ["loosened", "redaction", "tightened"]
    assert report.newly_blocked == ["tightened"]
    assert report.newly_allowed == ["loosened"] and report.not_rescorable == ["loosened"]
    assert report.changed_redactions == ["redaction"]
    assert report.unaudited == ["never_audited"]
    tightened = [c for c in report.changes if c.request_id == "tightened"]
    assert [(c.stage, c.check, c.old.action, c.new.action) for c in tightened] == [
        ("input", "toxicity", "allow", "block")]


def test_a_check_that_starts_running_is_a_change_but_a_newly_skipped_one_is_not():
    old = {"r": {("input", "toxicity"): ALLOW}}
    new = {"r": {("input", "toxicity"): ALLOW, ("input", "injection_classifier"): BLOCK,
                 ("input", "new_check"): Outcome("skip", False, None)}}
    report = diff(old, new, _report())
    assert [(c.check, c.old, c.new.action) for c in report.changes] == [
        ("injection_classifier", None, "block")]
    assert report.newly_blocked == ["r"]


def test_markdown_report_names_every_change_and_the_totals():
    old = {"r1": {("input", "toxicity"): ALLOW}, "r2": {("input", "toxicity"): ALLOW}}
    new = {"r1": {("input", "toxicity"): BLOCK}, "r2": {("input", "toxicity"): ALLOW}}
    text = diff(old, new, _report()).to_markdown()
    assert "newly blocked: 1" in text and "| `r1` | input | toxicity | allow | block |" in text
    assert "`r2`" not in text
    assert "No decision would change." in diff(old, old, _report()).to_markdown()
