"""Which checkpoint a restarted training job resumes from, when the worker before it was
killed at any point, including in the middle of writing a checkpoint."""

from pathlib import Path

import pytest

from services.finetune.training import CHECKPOINT_COMPLETE, last_complete_checkpoint

pytestmark = pytest.mark.unit


def _checkpoint(work: Path, step: int, complete: bool) -> Path:
    path = work / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "adapter_model.safetensors").write_bytes(b"weights")
    if complete:
        (path / CHECKPOINT_COMPLETE).write_text("{}")
    return path


def test_a_checkpoint_killed_while_saving_is_skipped_and_removed(tmp_path):
    _checkpoint(tmp_path, 2, complete=True)
    four = _checkpoint(tmp_path, 4, complete=True)
    half_written = _checkpoint(tmp_path, 6, complete=False)
    assert last_complete_checkpoint(tmp_path) == str(four)
    assert not half_written.exists()  # the next save of step 6 starts from nothing
    assert four.exists() and (tmp_path / "checkpoint-2").exists()


def test_a_trainer_state_cut_in_its_own_write_does_not_count(tmp_path):
    two = _checkpoint(tmp_path, 2, complete=True)
    cut = _checkpoint(tmp_path, 4, complete=True)
    (cut / CHECKPOINT_COMPLETE).write_text('{"global_step": 4, "log_hi')
    assert last_complete_checkpoint(tmp_path) == str(two)
    assert not cut.exists()


def test_steps_compare_as_numbers_not_names(tmp_path):
    _checkpoint(tmp_path, 9, complete=True)
    ten = _checkpoint(tmp_path, 10, complete=True)
    assert last_complete_checkpoint(tmp_path) == str(ten)


def test_no_complete_checkpoint_means_a_fresh_start(tmp_path):
    assert last_complete_checkpoint(tmp_path) is None
    _checkpoint(tmp_path, 2, complete=False)
    assert last_complete_checkpoint(tmp_path) is None
    assert not (tmp_path / "checkpoint-2").exists()
