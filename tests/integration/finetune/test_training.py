"""LoRA training on the CPU with the served base model: a few steps on a few examples.

The adapter folder must be what serving loads (peft ``adapter_config.json`` +
``adapter_model.safetensors``) and load onto the base with peft; the same seed must give the
same loss; MLflow must record parameters, the loss curve and artifacts; a run resumed from a
checkpoint continues the step count instead of starting over.
"""

from __future__ import annotations

import json

import pytest

from services.common.config import get_settings
from services.finetune.examples import ChatExample
from services.finetune.training import TrainingCancelled, TrainingConfig, train_adapter

pytestmark = pytest.mark.integration

EXAMPLES = [ChatExample(messages=[
    {"role": "user", "content": f"<context>\n[1] Doc\nItem {i} costs {i * 3} euros.\n"
                                f"</context>\n\nQuestion: What does item {i} cost?"},
    {"role": "assistant", "content": f"{i * 3} euros [1]."}]) for i in range(6)]
FAST = {"max_steps": 2, "batch_size": 2, "lora_r": 4, "lora_alpha": 8, "max_seq_len": 128,
        "lora_top_layers": 2, "save_steps": 1, "seed": 7}


def _config(**changes) -> TrainingConfig:
    return TrainingConfig.from_hyperparameters({**FAST, **changes})


def test_adapter_is_saved_in_peft_format_and_loads_on_the_base(tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    seen = []
    result = train_adapter(EXAMPLES, _config(), tmp_path / "adapter", on_progress=seen.append)
    folder = result.adapter_dir
    assert (folder / "adapter_config.json").is_file()
    assert (folder / "adapter_model.safetensors").is_file()
    assert result.steps == 2 and [p.step for p in seen] == [1, 2]
    assert all(p.total_steps == 2 and p.loss is not None and p.loss > 0 for p in seen)
    assert result.loss_curve == [(p.step, p.loss) for p in seen]
    assert result.final_loss == seen[-1].loss
    assert result.tokens_per_s > 0 and result.peak_memory_mb > 0 and result.train_tokens > 0
    config = json.loads((folder / "adapter_config.json").read_text())
    assert config["r"] == 4 and config["peft_type"] == "LORA"
    assert config["layers_to_transform"] == [28, 29]
    manifest = json.loads((folder / "customllm-training.json").read_text())
    assert manifest["steps"] == 2 and manifest["base_model"] == get_settings().local_model_id

    base = AutoModelForCausalLM.from_pretrained(config["base_model_name_or_path"],
                                                local_files_only=True)
    tuned = PeftModel.from_pretrained(base, str(folder))
    lora_a = [n for n, _ in tuned.named_parameters() if "lora_A" in n]
    assert len(lora_a) == 2 * 4  # 2 layers × q, k, v, o


def test_same_seed_same_loss_and_another_seed_differs(tmp_path):
    first = train_adapter(EXAMPLES, _config(), tmp_path / "a")
    second = train_adapter(EXAMPLES, _config(), tmp_path / "b")
    other = train_adapter(EXAMPLES, _config(seed=8), tmp_path / "c")
    assert first.loss_curve == second.loss_curve
    assert other.loss_curve != first.loss_curve


def test_mlflow_records_params_loss_curve_and_artifacts(tmp_path):
    from mlflow.tracking import MlflowClient

    from services.finetune.tracking import log_training, mlflow_run, tracking_uri

    settings = get_settings()
    config = _config()
    with mlflow_run("test-training", "tiny", config.as_dict(), {"purpose": "test"}) as run:
        result = train_adapter(EXAMPLES, config, tmp_path / "adapter")
        log_training(run, result, card={"n_examples": len(EXAMPLES)},
                     card_markdown="# Data card\n")
        run.log_metric("heldout_token_f1", 0.5)
    uri = tracking_uri(settings)
    assert uri.startswith("sqlite:///") and str(settings.state_path) in uri
    client = MlflowClient(tracking_uri=uri)
    stored = client.get_run(run.run_id)
    assert stored.info.status == "FINISHED"
    assert stored.data.params["lora_r"] == "4" and stored.data.tags["purpose"] == "test"
    assert stored.data.metrics["heldout_token_f1"] == 0.5
    history = client.get_metric_history(run.run_id, "train_loss")
    assert [(m.step, m.value) for m in history] == result.loss_curve
    artifacts = {a.path for a in client.list_artifacts(run.run_id)}
    assert {"adapter", "data_card.json", "data_card.md"} <= artifacts
    adapter_files = {a.path for a in client.list_artifacts(run.run_id, "adapter")}
    assert "adapter/adapter_model.safetensors" in adapter_files


def test_a_failed_block_marks_the_run_failed(tmp_path):
    from mlflow.tracking import MlflowClient

    from services.finetune.tracking import mlflow_run, tracking_uri

    with pytest.raises(RuntimeError), mlflow_run("test-training", "boom", {}, {}) as run:
        raise RuntimeError("boom")
    client = MlflowClient(tracking_uri=tracking_uri(get_settings()))
    assert client.get_run(run.run_id).info.status == "FAILED"


def test_cancel_then_resume_continues_the_step_count(tmp_path):
    checkpoints = tmp_path / "checkpoints"
    calls = {"n": 0}

    def stop_after_first_step() -> bool:
        calls["n"] += 1
        return calls["n"] >= 1

    with pytest.raises(TrainingCancelled) as cancelled:
        train_adapter(EXAMPLES, _config(max_steps=3), tmp_path / "adapter",
                      checkpoint_dir=checkpoints, should_stop=stop_after_first_step)
    assert cancelled.value.step == 1
    assert cancelled.value.checkpoint == checkpoints / "checkpoint-1"
    assert not (tmp_path / "adapter").exists()

    seen = []
    resumed = train_adapter(EXAMPLES, _config(max_steps=3), tmp_path / "adapter",
                            checkpoint_dir=checkpoints, on_progress=seen.append)
    assert resumed.resumed_from_step == 1
    assert resumed.steps == 3 and [p.step for p in seen] == [2, 3]
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()


def test_the_last_step_is_not_checkpointed_because_the_result_is_saved(tmp_path):
    checkpoints = tmp_path / "checkpoints"
    result = train_adapter(EXAMPLES, _config(max_steps=2, save_steps=1), tmp_path / "adapter",
                           checkpoint_dir=checkpoints)
    assert result.steps == 2
    assert sorted(p.name for p in checkpoints.iterdir() if p.is_dir()) == ["checkpoint-1"]
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
