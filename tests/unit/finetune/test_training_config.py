"""Training configuration from a job's hyperparameters, and the QLoRA refusal on the CPU."""

from __future__ import annotations

import time

import pytest

from services.finetune import hardware
from services.finetune.examples import ChatExample
from services.finetune.training import (
    QLoRAUnavailable,
    TrainingConfig,
    TrainingError,
    train_adapter,
)

pytestmark = pytest.mark.unit

EXAMPLE = ChatExample(messages=[{"role": "user", "content": "q"},
                                {"role": "assistant", "content": "a"}])


def test_defaults_suit_small_data():
    config = TrainingConfig()
    assert (config.method, config.lora_r, config.lora_alpha, config.learning_rate) == (
        "lora", 16, 32, 2e-4)
    assert config.target_modules == ("q_proj", "k_proj", "v_proj", "o_proj")
    assert config.max_steps is None


def test_hyperparameters_are_coerced_to_the_fields_types():
    config = TrainingConfig.from_hyperparameters({
        "epochs": "2", "learning_rate": "1e-3", "lora_r": 8.0, "max_steps": "5",
        "target_modules": "q_proj, v_proj", "method": "qlora", "lora_top_layers": 4})
    assert config.epochs == 2.0 and config.learning_rate == 1e-3
    assert config.lora_r == 8 and isinstance(config.lora_r, int)
    assert config.max_steps == 5
    assert config.target_modules == ("q_proj", "v_proj")
    assert config.method == "qlora"
    assert config.lora_top_layers == 4
    assert TrainingConfig.from_hyperparameters(config.as_dict()) == config


def test_unknown_hyperparameters_are_named():
    with pytest.raises(ValueError, match="unknown hyperparameters: learnin_rate, rank"):
        TrainingConfig.from_hyperparameters({"learnin_rate": 1e-4, "rank": 8, "epochs": 1})


@pytest.mark.parametrize(("field", "value", "message"), [
    ("method", "dora", "method must be"),
    ("lora_r", 0, "lora_r must be at least 1"),
    ("learning_rate", 2.0, "learning_rate must be in"),
    ("max_steps", 0, "max_steps must be at least 1"),
    ("lora_dropout", 1.0, "lora_dropout"),
])
def test_invalid_values_are_refused(field, value, message):
    with pytest.raises(ValueError, match=message):
        TrainingConfig(**{field: value})


def test_qlora_refuses_on_a_machine_without_cuda_before_loading_anything(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    started = time.perf_counter()
    with pytest.raises(QLoRAUnavailable) as raised:
        train_adapter([EXAMPLE], TrainingConfig(method="qlora"), __import__("pathlib").Path(
            "/nonexistent/adapter"))
    assert time.perf_counter() - started < 5  # no model was loaded
    message = str(raised.value)
    assert "CUDA" in message and "use method 'lora'" in message
    assert hardware.qlora_unavailable_reason() == message


def test_this_machine_reports_qlora_availability_consistently():
    import torch

    reason = hardware.qlora_unavailable_reason()
    assert (reason is None) == torch.cuda.is_available()


def test_no_examples_is_an_error_not_an_empty_adapter(tmp_path):
    with pytest.raises(TrainingError, match="no examples"):
        train_adapter([], TrainingConfig(), tmp_path / "adapter")
