"""The free-disk estimate a full-model job checks before it trains."""

from __future__ import annotations

import pytest

from services.finetune.disk import (
    NotEnoughDisk,
    full_model_bytes_needed,
    planned_steps,
    require_free_disk,
)

pytestmark = pytest.mark.unit

GIB = 2**30


def test_max_steps_wins_over_epochs_and_epochs_round_up():
    assert planned_steps(100, 4, 1, 3.0, 7) == 7
    assert planned_steps(10, 4, 1, 1.0, None) == 3  # 3 batches, the last one partial
    assert planned_steps(10, 2, 2, 1.5, None) == 5  # 3 steps an epoch, half an epoch more


def test_a_short_run_needs_only_the_saved_model():
    assert full_model_bytes_needed(GIB, steps=2, save_steps=1000, checkpointing=True) == GIB
    assert full_model_bytes_needed(GIB, steps=500, save_steps=1, checkpointing=False) == GIB


def test_checkpoints_count_three_times_the_weights_and_at_most_three_at_once():
    # Steps 50 and 100 are checkpointed; the last step (120) is not.
    assert full_model_bytes_needed(GIB, steps=120, save_steps=50, checkpointing=True) == 7 * GIB
    assert full_model_bytes_needed(GIB, steps=100, save_steps=50, checkpointing=True) == 4 * GIB
    many = full_model_bytes_needed(GIB, steps=10_000, save_steps=10, checkpointing=True)
    assert many == 10 * GIB


def test_a_job_that_cannot_fit_fails_with_the_room_it_needs(tmp_path):
    require_free_disk(tmp_path / "not" / "yet", 1, "a tiny job")  # probes the nearest folder
    with pytest.raises(NotEnoughDisk, match=r"needs about .* GiB free under .*save_steps"):
        require_free_disk(tmp_path, 2**60, "a huge job")
