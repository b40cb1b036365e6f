"""A LoRA job that starts from a registered adapter: the shape it inherits, the settings it
refuses, the references it accepts."""

from __future__ import annotations

import json

import pytest

from services.common.events import FinetuneDataset, FinetuneRequest
from services.common.generation.answer_adapter import SHIPPED_DIR
from services.finetune.handlers import FinetuneError, submit_problems
from services.finetune.training import TrainingConfig
from services.finetune.warm_start import WarmStart, lora_shape, shape_conflicts

pytestmark = pytest.mark.unit

BASE = "HuggingFaceTB/SmolLM2-135M-Instruct"
SHIPPED = json.loads((SHIPPED_DIR / "adapter_config.json").read_text())


def _request(**hyperparameters) -> FinetuneRequest:
    return FinetuneRequest(job_id="job-warm", adapter_name="acme",
                           dataset=FinetuneDataset(snapshot_id="0123456789"),
                           hyperparameters=hyperparameters)


def test_the_shipped_adapter_is_its_top_sixteen_layers_at_rank_sixteen():
    shape = lora_shape(SHIPPED)
    assert shape == {"lora_r": 16, "lora_alpha": 32, "lora_top_layers": 16,
                     "target_modules": ("down_proj", "gate_proj", "k_proj", "o_proj",
                                        "q_proj", "up_proj", "v_proj")}
    assert lora_shape({**SHIPPED, "layers_to_transform": None})["lora_top_layers"] is None


def test_a_layer_set_with_a_gap_cannot_be_continued():
    with pytest.raises(FinetuneError, match="not a top block"):
        lora_shape({**SHIPPED, "layers_to_transform": [27, 29]})


def test_only_shape_settings_that_differ_from_the_adapter_are_refused():
    shape = lora_shape(SHIPPED)
    assert shape_conflicts({"max_steps": 6, "learning_rate": 1e-4}, shape) == []
    assert shape_conflicts({"lora_r": "16", "lora_top_layers": 16,
                            "target_modules": "v_proj,q_proj,k_proj,o_proj,gate_proj,up_proj,"
                                              "down_proj"}, shape) == []
    assert shape_conflicts({"lora_r": 8, "lora_top_layers": 10}, shape) == [
        "lora_r=16", "lora_top_layers=16"]
    assert shape_conflicts({"target_modules": ["q_proj"]}, shape) == [
        "target_modules=down_proj,gate_proj,k_proj,o_proj,q_proj,up_proj,v_proj"]


def test_a_resolved_start_survives_the_work_folder_round_trip(tmp_path):
    start = WarmStart("answers@v3", tmp_path / "answers@v3", lora_shape(SHIPPED))
    assert WarmStart.from_json(start.to_json()) == start


def test_only_a_lora_job_with_a_valid_reference_may_start_from_an_adapter():
    assert submit_problems(_request(init_adapter="answers"), BASE) == []
    assert submit_problems(_request(init_adapter="answers@v2"), BASE) == []
    assert any("init_adapter" in p and "not an adapter reference" in p
               for p in submit_problems(_request(init_adapter="no such/thing"), BASE))
    with pytest.raises(ValueError, match="method must be lora"):
        TrainingConfig.from_hyperparameters({"method": "full", "init_adapter": "answers"})
    assert TrainingConfig.from_hyperparameters({"init_adapter": ""}).init_adapter is None
