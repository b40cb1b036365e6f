"""`customllm finetune submit` refuses an unrunnable job before anything is published."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from services.cli.finetune_cmds import _hyperparameters, new_job_id
from services.cli.main import app

pytestmark = pytest.mark.unit

cli = CliRunner()


def test_hyperparameters_from_yaml_with_overrides(tmp_path):
    config = tmp_path / "lora.yaml"
    config.write_text("hyperparameters:\n  lora_r: 8\n  learning_rate: 1.0e-4\n")
    hp = _hyperparameters(config, ["max_steps=20", "target_modules=[q_proj, v_proj]"])
    assert hp == {"lora_r": 8, "learning_rate": 1e-4, "max_steps": 20,
                  "target_modules": ["q_proj", "v_proj"]}


def test_unknown_hyperparameters_and_bad_references_are_refused_up_front(tmp_path):
    result = cli.invoke(app, ["finetune", "submit", "--adapter", "fmt", "--source", "s",
                              "--set", "max_stepz=3"])
    assert result.exit_code == 2 and "unknown hyperparameters: max_stepz" in result.output
    result = cli.invoke(app, ["finetune", "submit", "--adapter", "fmt", "--method", "dora"])
    assert result.exit_code == 2
    assert "lora, qlora, full, continued_pretraining" in result.output
    result = cli.invoke(app, ["adapters", "promote", "fmt"])
    assert result.exit_code == 2 and "fmt@vN" in result.output


def test_every_method_of_the_request_schema_is_offered():
    from services.cli.finetune_cmds import METHODS
    from services.common import contracts

    schema = contracts.validator("finetune-request.v1").schema
    assert set(METHODS) == set(schema["properties"]["method"]["enum"])


def test_job_ids_are_unique_and_valid():
    ids = {new_job_id() for _ in range(50)}
    assert len(ids) == 50 and all(i.startswith("ft-") for i in ids)
