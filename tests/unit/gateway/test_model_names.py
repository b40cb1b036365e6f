import pytest
from fastapi import HTTPException

from services.common.config import Settings
from services.gateway.model_names import available_adapters, split_model

pytestmark = pytest.mark.unit
BASE = "HuggingFaceTB/SmolLM2-135M-Instruct"


@pytest.mark.parametrize("model, adapter", [
    ("customllm", None), (BASE, None), ("SmolLM2-135M-Instruct", None),
    (f"{BASE}:support-v2", "support-v2"), ("customllm:fmt", "fmt")])
def test_model_names(model, adapter):
    assert split_model(model, BASE) == adapter


@pytest.mark.parametrize("model, code", [("gpt-4", 404), ("customllm:../etc", 400)])
def test_bad_model_names(model, code):
    with pytest.raises(HTTPException) as caught:
        split_model(model, BASE)
    assert caught.value.status_code == code


def test_adapters_are_found_on_disk_without_restart(tmp_path):
    settings = Settings(adapters_dir=tmp_path)
    assert available_adapters(settings) == []
    (tmp_path / "fmt").mkdir()
    (tmp_path / "fmt" / "adapter_config.json").write_text("{}")
    (tmp_path / "not-an-adapter").mkdir()
    assert available_adapters(settings) == ["fmt"]
