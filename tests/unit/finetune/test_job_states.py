"""The job state machine, claiming decisions, adapter references and progress throttling."""

from __future__ import annotations

import pytest

from services.finetune.handlers import (
    AdapterRef,
    FinetuneError,
    InvalidTransition,
    ProgressThrottle,
    check_transition,
    claim_action,
    lost_worker_reason,
    parse_ref,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("current, new", [
    ("queued", "running"), ("queued", "cancelled"), ("running", "evaluating"),
    ("running", "running"), ("evaluating", "running"), ("evaluating", "completed"),
    ("running", "failed"), ("running", "cancelled")])
def test_allowed_transitions(current, new):
    check_transition(current, new)


@pytest.mark.parametrize("current, new", [
    ("queued", "completed"), ("queued", "evaluating"), ("completed", "running"),
    ("failed", "running"), ("cancelled", "queued"), ("completed", "failed")])
def test_forbidden_transitions(current, new):
    with pytest.raises(InvalidTransition, match=f"a {current} job cannot become {new}"):
        check_transition(current, new)


def test_claiming_starts_resumes_fails_or_cancels():
    assert claim_action("queued", 0, 3, cancel_requested=False) == "start"
    assert claim_action("running", 1, 3, cancel_requested=False) == "resume"
    assert claim_action("evaluating", 2, 3, cancel_requested=False) == "resume"
    assert claim_action("running", 3, 3, cancel_requested=False) == "fail"
    assert claim_action("queued", 0, 3, cancel_requested=True) == "cancel"
    assert claim_action("running", 3, 3, cancel_requested=True) == "cancel"
    with pytest.raises(InvalidTransition):
        claim_action("completed", 1, 3, cancel_requested=False)


def test_the_reason_of_a_lost_worker_names_it_and_the_attempts():
    reason = lost_worker_reason("finetune-ab12", 3, 3)
    assert "finetune-ab12" in reason and "3 of 3" in reason and "lease expired" in reason


@pytest.mark.parametrize("text, ref", [
    ("support", AdapterRef("support")), ("support@v3", AdapterRef("support", 3)),
    ("support@3", AdapterRef("support", 3)), ("a.b-c_d@v12", AdapterRef("a.b-c_d", 12))])
def test_adapter_references(text, ref):
    assert parse_ref(text) == ref
    assert parse_ref(str(ref)) == ref


@pytest.mark.parametrize("text", ["", "../x", "a@", "a@vx", "a@v1@v2", "-a"])
def test_bad_adapter_references(text):
    with pytest.raises(FinetuneError):
        parse_ref(text)


def test_progress_is_throttled_but_keeps_the_first_and_last_step():
    throttle = ProgressThrottle(every_s=2.0)
    sent = [step for step, now in [(1, 0.0), (2, 0.5), (3, 1.9), (4, 2.1), (5, 2.2), (6, 2.3)]
            if throttle.should_send(now, step, total=6)]
    assert sent == [1, 4, 6]


def test_metric_names_are_made_valid_for_mlflow():
    from services.finetune.executor import _mlflow_key

    assert _mlflow_key("hit@5") == "hit_at_5"
    assert _mlflow_key("baseline_latency_total_ms") == "baseline_latency_total_ms"
