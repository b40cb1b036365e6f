"""Free disk a full-model job needs, checked before training rather than found missing after.

A full fine-tune of even the 135M default writes half a gigabyte of weights, and each
checkpoint holds the weights plus AdamW's two moments (three times as much). A disk that
fills up fails the job at its first save, minutes in, with a bare ``os error 28``; checked
first, the job fails at once and says how much room it needs and where.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from services.common.exceptions import CustomLLMError

CHECKPOINT_SIZE_FACTOR = 3  # weights + AdamW's first and second moments, all float32
CHECKPOINTS_KEPT = 2  # the Trainer's save_total_limit; one more exists while it rotates


class NotEnoughDisk(CustomLLMError):
    """The folder a job writes to cannot hold what the job will write."""


def planned_steps(n_examples: int, batch_size: int, grad_accum: int, epochs: float,
                  max_steps: int | None) -> int:
    """Optimizer steps the Trainer will run (its own rule: max_steps wins over epochs)."""
    if max_steps is not None:
        return max_steps
    per_epoch = max(1, -(-n_examples // (batch_size * grad_accum)))
    return max(1, int(-(-per_epoch * epochs // 1)))


def full_model_bytes_needed(weight_bytes: int, steps: int, save_steps: int, *,
                            checkpointing: bool) -> int:
    """The saved model plus the most checkpoints on disk at once (the last step is not
    checkpointed: the result is saved instead)."""
    checkpoints = (steps - 1) // save_steps if checkpointing else 0
    on_disk = min(checkpoints, CHECKPOINTS_KEPT + 1)
    return weight_bytes * (1 + CHECKPOINT_SIZE_FACTOR * on_disk)


def require_free_disk(folder: Path, needed: int, what: str) -> None:
    """Raise :class:`NotEnoughDisk` unless the file system holding ``folder`` has room."""
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < needed:
        raise NotEnoughDisk(
            f"{what} needs about {needed / 2**30:.2f} GiB free under {probe}, which has "
            f"{free / 2**30:.2f} GiB: free some space, point the work folder elsewhere, or "
            "checkpoint less often (save_steps)")
