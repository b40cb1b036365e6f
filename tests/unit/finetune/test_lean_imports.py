"""The finetune worker at rest loads no torch, transformers or peft: they are imported inside
the functions that train, evaluate or check the hardware, so an idle worker costs what its
Kafka consumer and database pool cost, not a deep-learning runtime (issue #12, lean
processes). Checked in a fresh interpreter, since this test process may have torch already."""

from __future__ import annotations

from pathlib import Path

from tests.support.lean import heavy_modules_after, import_all, offline_env


def test_every_finetune_module_imports_without_torch(tmp_path: Path) -> None:
    env = offline_env(tmp_path, "finetune")
    assert heavy_modules_after(import_all("services.finetune"), env) == []


def test_the_worker_at_rest_has_no_torch(tmp_path: Path) -> None:
    """The worker's module as ``python -m services.finetune`` loads it (agent, executor,
    producer, engine), plus what the executor touches on an idle loop iteration's way."""
    code = """
import services.finetune.app as app
from services.finetune import hardware
assert app.executor is not None
hardware.cpu_threads()
"""
    assert heavy_modules_after(code, offline_env(tmp_path, "finetune")) == []


def test_training_imports_torch_only_when_asked(tmp_path: Path) -> None:
    """The probe itself can see torch: asking the hardware question loads it (so the check
    above is not vacuous)."""
    code = """
from services.finetune import hardware
hardware.qlora_unavailable_reason()
"""
    assert "torch" in heavy_modules_after(code, offline_env(tmp_path, "finetune"))
