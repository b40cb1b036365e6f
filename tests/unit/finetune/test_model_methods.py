"""``method: full`` and ``method: continued_pretraining``: the contract is extended additively
(old v1 messages still validate), requests that would silently ignore a field are refused, the
training configuration defaults to a full-fine-tuning learning rate, and the card says what
kind of version it describes."""

from __future__ import annotations

import json

import pytest

from services.common.events import FinetuneDataset, FinetuneRequest
from services.common.exceptions import InvalidEvent
from services.finetune import cards
from services.finetune.handlers import parse_request, submit_problems
from services.finetune.training import (
    FULL_LEARNING_RATE,
    TrainingConfig,
    TrainingError,
    is_model_method,
    train_adapter,
    train_model,
)

pytestmark = pytest.mark.unit

BASE = "HuggingFaceTB/SmolLM2-135M-Instruct"


def _request(method: str, **dataset) -> FinetuneRequest:
    return FinetuneRequest(job_id="job-1", adapter_name="support", method=method,
                           dataset=FinetuneDataset(**dataset),
                           hyperparameters={"max_steps": 2})


def test_an_old_v1_message_still_validates_unchanged():
    old = {"action": "submit", "job_id": "ft-old", "adapter_name": "support", "method": "lora",
           "dataset": {"snapshot_id": "abcdef0123", "sources": [], "tags": [],
                       "max_privacy": "internal"},
           "hyperparameters": {"max_steps": 2}, "promote": "gate",
           "created_at": "2026-11-26T10:15:00Z"}
    parsed = parse_request(json.dumps(old).encode(), BASE)
    assert parsed.method == "lora" and parsed.dataset.licenses is None


@pytest.mark.parametrize("method", ["full", "continued_pretraining"])
def test_the_new_methods_pass_the_contract(method):
    dataset = {"snapshot_id": "abcdef0123"} if method == "full" else {
        "sources": ["wiki"], "max_privacy": "public", "licenses": ["CC0"]}
    request = _request(method, **dataset)
    assert parse_request(request.to_json(), BASE) == request
    assert is_model_method(method)


def test_fields_a_method_would_ignore_are_refused():
    cpt = _request("continued_pretraining", snapshot_id="abcdef0123", tags=["x"], licenses=[" "])
    text = " | ".join(submit_problems(cpt, BASE))
    assert "not on a supervision snapshot" in text and "not by tags" in text
    assert "licenses is empty" in text
    lora = _request("lora", snapshot_id="abcdef0123", licenses=["CC0"])
    assert submit_problems(lora, BASE) == [
        "dataset.licenses applies to continued_pretraining, not lora"]
    with pytest.raises(InvalidEvent):
        parse_request(cpt.to_json(), BASE)


def test_an_unknown_method_is_still_a_schema_violation():
    bad = {"job_id": "j", "adapter_name": "a", "method": "dora", "dataset": {},
           "created_at": "2026-01-01T00:00:00Z"}
    with pytest.raises(InvalidEvent) as caught:
        parse_request(json.dumps(bad).encode(), BASE)
    assert "method" in caught.value.reason


def test_full_methods_default_to_a_small_learning_rate_unless_given():
    assert TrainingConfig.from_hyperparameters({"method": "full"}).learning_rate == \
        FULL_LEARNING_RATE
    assert TrainingConfig.from_hyperparameters(
        {"method": "continued_pretraining", "learning_rate": 1e-4}).learning_rate == 1e-4
    assert TrainingConfig.from_hyperparameters({"method": "lora"}).learning_rate == 2e-4
    with pytest.raises(ValueError, match="method must be one of"):
        TrainingConfig(method="dora")  # type: ignore[arg-type]


def test_each_trainer_refuses_the_other_kind_before_loading_anything(tmp_path):
    with pytest.raises(TrainingError, match="use train_model"):
        train_adapter([], TrainingConfig(method="full"), tmp_path)
    with pytest.raises(TrainingError, match="use train_adapter"):
        train_model([], TrainingConfig(method="lora"), tmp_path)
    with pytest.raises(TrainingError, match="corpus policy allowed nothing"):
        train_model([], TrainingConfig(method="continued_pretraining"), tmp_path)


def test_a_model_card_says_model_and_how_to_serve_all_weights():
    card = cards.adapter_card(
        name="support", version="v2", base_model=BASE, method="continued_pretraining",
        job_id="j", path="/lib/support@v2", status="candidate", hyperparameters={},
        training={}, dataset={}, gate=None, data_card_markdown="# Data card: corpus",
        kind="model")
    assert card.startswith("# Model `support@v2`")
    assert "continued pretraining on the knowledge set" in card
    assert "vllm serve /lib/support@v2 --served-model-name support" in card
    assert "--lora-modules" not in card and "# Data card: corpus" in card
    adapter = cards.adapter_card(
        name="support", version="v1", base_model=BASE, method="lora", job_id="j",
        path="/lib/support@v1", status="candidate", hyperparameters={}, training={},
        dataset={}, gate=None)
    assert adapter.startswith("# Adapter `support@v1`") and "--lora-modules" in adapter
