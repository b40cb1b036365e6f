"""Request validation: a job that cannot run is refused at intake, with every reason."""

from __future__ import annotations

import json

import pytest

from services.common.events import (
    FinetuneDataset,
    FinetuneEvaluation,
    FinetuneEvent,
    FinetuneRequest,
)
from services.common.exceptions import InvalidEvent
from services.finetune.handlers import parse_request, submit_problems

pytestmark = pytest.mark.unit

BASE = "HuggingFaceTB/SmolLM2-135M-Instruct"


def _request(**overrides) -> FinetuneRequest:
    fields = {"job_id": "job-1", "adapter_name": "support",
              "dataset": FinetuneDataset(snapshot_id="abcdef0123"),
              "hyperparameters": {"max_steps": 3, "lora_r": 4}}
    return FinetuneRequest(**{**fields, **overrides})


def test_a_valid_submit_round_trips_through_the_contract():
    request = _request(evaluation=FinetuneEvaluation(
        cases=[{"id": "c1", "question": "Who?", "answers": ["Ada"]}],
        tolerances={"f1": 0.1, "latency_total_ms": None}))
    parsed = parse_request(request.to_json(), BASE)
    assert parsed == request
    assert parse_request(_request(base_model="SmolLM2-135M-Instruct").to_json(), BASE)


def test_a_cancel_needs_only_the_job_id():
    cancel = parse_request(FinetuneRequest(action="cancel", job_id="job-1").to_json(), BASE)
    assert (cancel.action, cancel.job_id) == ("cancel", "job-1")


@pytest.mark.parametrize("payload, needle", [
    (b"not json", "not JSON"),
    (json.dumps({"job_id": "j", "created_at": "2026-01-01T00:00:00Z"}).encode(),
     "adapter_name"),
    (json.dumps({"job_id": "../x", "action": "cancel",
                 "created_at": "2026-01-01T00:00:00Z"}).encode(), "job_id"),
    (json.dumps({"job_id": "j", "adapter_name": "a", "method": "dora", "dataset": {},
                 "created_at": "2026-01-01T00:00:00Z"}).encode(), "method"),
])
def test_malformed_requests_are_schema_violations(payload, needle):
    with pytest.raises(InvalidEvent) as caught:
        parse_request(payload, BASE)
    assert caught.value.error_type in ("schema_violation", "malformed_json")
    assert needle in caught.value.reason


def test_meaning_is_checked_before_the_job_is_queued():
    request = _request(base_model="meta-llama/Llama-3-8B",
                       hyperparameters={"max_stepz": 3, "lora_r": 0},
                       evaluation=FinetuneEvaluation(cases=[{"id": "c1"}],
                                                     tolerances={"f1": -1}))
    problems = submit_problems(request, BASE)
    text = " | ".join(problems)
    assert "not the served base model" in text
    assert "unknown hyperparameters: max_stepz" in text
    assert "evaluation.cases[0]" in text
    assert "tolerance f1 must be a non-negative number" in text
    with pytest.raises(InvalidEvent) as caught:
        parse_request(request.to_json(), BASE)
    assert "max_stepz" in caught.value.reason


def test_bad_hyperparameter_values_are_refused():
    problems = submit_problems(_request(hyperparameters={"lora_r": 0}), BASE)
    assert problems and "lora_r must be at least 1" in problems[0]


def test_a_testset_path_and_inline_cases_are_exclusive():
    request = _request(evaluation=FinetuneEvaluation(testset="x.jsonl",
                                                     cases=[{"id": "a", "question": "q"}]))
    assert any("not both" in p for p in submit_problems(request, BASE))


def test_events_match_their_schema():
    event = FinetuneEvent(job_id="job-1", status="running", attempt=2,
                          progress={"step": 3, "max_steps": 10, "loss": 1.25, "fraction": 0.3})
    assert json.loads(event.to_json())["progress"]["loss"] == 1.25
    failed = FinetuneEvent(job_id="job-1", status="failed", error="QLoRAUnavailable: no GPU")
    assert FinetuneEvent.model_validate_json(failed.to_json()) == failed
