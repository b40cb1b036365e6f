"""The retraining policy's decision (issue 17, item 3): when an automatic fine-tuning job is
queued, and why not otherwise; the request it queues; its settings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.finetune import auto_retrain
from services.finetune.auto_retrain import LoopState, RetrainPolicy, decide, job_id_for
from services.finetune.config import FinetuneSettings

pytestmark = pytest.mark.unit
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def _policy(**overrides) -> RetrainPolicy:
    return RetrainPolicy(**{"enabled": True, "adapter": "support", "min_new_examples": 3,
                            **overrides})


def _state(new: int, last_ago_s: float | None = None, **overrides) -> LoopState:
    last = NOW - timedelta(seconds=last_ago_s) if last_ago_s is not None else None
    return LoopState(new_examples=new, last_job_id="auto-support-1" if last else None,
                     last_job_at=last, **overrides)


def test_the_threshold_queues_a_job():
    decision = decide(_policy(), _state(3), NOW)
    assert decision.queue and decision.code == "threshold"
    assert "3 new approved example(s) reached the threshold of 3" in decision.reason


def test_below_the_threshold_waits_and_says_how_far():
    decision = decide(_policy(), _state(2, last_ago_s=10), NOW)
    assert not decision.queue and decision.code == "below_threshold"
    assert decision.reason == "2 of 3 new approved example(s)"


def test_nothing_new_waits_even_on_schedule():
    for state in (_state(0), _state(0, last_ago_s=10**6)):
        decision = decide(_policy(every_s=60), state, NOW)
        assert not decision.queue and decision.code == "nothing_new"


def test_a_live_automatic_job_is_waited_for():
    decision = decide(_policy(), _state(50, last_ago_s=5, live_job_id="auto-support-abc",
                                        live_status="running"), NOW)
    assert not decision.queue and decision.code == "live_job"
    assert "auto-support-abc is running" in decision.reason


def test_the_minimum_interval_holds_back_the_threshold():
    policy = _policy(min_interval_s=3600)
    assert decide(policy, _state(10, last_ago_s=600), NOW).code == "too_soon"
    assert decide(policy, _state(10, last_ago_s=3600), NOW).code == "threshold"
    assert decide(policy, _state(10), NOW).code == "threshold"  # no previous job


def test_the_schedule_queues_what_is_there_once_due():
    policy = _policy(min_new_examples=100, every_s=86400)
    assert decide(policy, _state(1, last_ago_s=3600), NOW).code == "below_threshold"
    due = decide(policy, _state(1, last_ago_s=86400), NOW)
    assert due.queue and due.code == "schedule" and "every 86400 s" in due.reason
    assert decide(policy, _state(1), NOW).code == "schedule"  # never ran: due at once


def test_disabled_never_queues():
    decision = decide(_policy(enabled=False), _state(1000), NOW)
    assert not decision.queue and decision.code == "disabled"


def test_the_job_id_is_a_function_of_adapter_and_snapshot():
    """A restarted worker, or a second one, publishing the same decision names the same job,
    which the intake queues once."""
    snapshot = "3f9a1c2e77" * 6
    assert job_id_for("support", snapshot) == job_id_for("support", snapshot)
    assert job_id_for("support", snapshot) != job_id_for("support", "0" + snapshot[1:])
    assert job_id_for("support", snapshot) != job_id_for("sales", snapshot)
    assert len(job_id_for("a" * 128, snapshot)) <= 128


def test_the_request_is_a_valid_automatic_submit():
    from services.finetune.handlers import parse_request

    policy = RetrainPolicy.from_settings(FinetuneSettings(
        auto_enabled=True, auto_adapter="support", auto_min_new_examples=1,
        auto_hyperparameters={"max_steps": 2, "lora_r": 4}, auto_testset="/data/gate.jsonl",
        auto_evaluation={"tolerances": {"f1": 0.5}, "max_tokens": 8}))
    request = policy.request("ab" * 32, "1 new approved example(s) reached the threshold", NOW)
    parsed = parse_request(request.to_json(), "HuggingFaceTB/SmolLM2-135M-Instruct")
    assert parsed.trigger == "auto" and parsed.requested_by == auto_retrain.REQUESTER
    assert parsed.job_id == job_id_for("support", "ab" * 32)
    assert parsed.dataset.snapshot_id == "ab" * 32 and parsed.promote == "gate"
    assert parsed.evaluation.testset == "/data/gate.jsonl"
    assert parsed.evaluation.tolerances == {"f1": 0.5} and parsed.evaluation.max_tokens == 8
    assert auto_retrain.problems(policy, "HuggingFaceTB/SmolLM2-135M-Instruct") == []


def test_a_policy_that_cannot_queue_valid_jobs_is_found_at_start():
    policy = RetrainPolicy.from_settings(FinetuneSettings(
        auto_enabled=True, auto_adapter="bad name!", auto_hyperparameters={"max_stepz": 2}))
    found = auto_retrain.problems(policy, "HuggingFaceTB/SmolLM2-135M-Instruct")
    assert any("adapter_name" in p for p in found) and any("max_stepz" in p for p in found)


def test_the_settings_read_the_environment(monkeypatch):
    monkeypatch.setenv("CUSTOMLLM_FINETUNE_AUTO_ENABLED", "1")
    monkeypatch.setenv("CUSTOMLLM_FINETUNE_AUTO_MIN_NEW_EXAMPLES", "1")
    monkeypatch.setenv("CUSTOMLLM_FINETUNE_AUTO_SOURCES", '["feedback"]')
    monkeypatch.setenv("CUSTOMLLM_FINETUNE_AUTO_HYPERPARAMETERS", '{"max_steps": 2}')
    policy = RetrainPolicy.from_settings(FinetuneSettings())
    assert policy.enabled and policy.min_new_examples == 1 and policy.sources == ("feedback",)
    assert policy.hyperparameters == {"max_steps": 2} and policy.max_privacy == "internal"
    assert policy.evaluation is None and "stay candidates" in policy.describe()


def test_off_by_default():
    assert not RetrainPolicy.from_settings(FinetuneSettings()).enabled
