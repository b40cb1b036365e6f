"""What the machine can train with: QLoRA needs a CUDA device and bitsandbytes.

Checked before anything is loaded, so a QLoRA job on a CPU-only worker fails in milliseconds
with a message that says why and what to do, rather than deep inside bitsandbytes.
"""

from __future__ import annotations

import importlib.util
import os

from services.common.exceptions import CustomLLMError


class QLoRAUnavailable(CustomLLMError):
    """QLoRA was asked for where it cannot run (no CUDA device, or no bitsandbytes)."""


def qlora_unavailable_reason() -> str | None:
    """None when QLoRA can run here, else the reason it cannot."""
    import torch

    if not torch.cuda.is_available():
        return ("method 'qlora' loads the base model in 4-bit with bitsandbytes, which needs a "
                "CUDA GPU, and no CUDA device is available on this machine; use method 'lora' "
                "(full-precision base, trains on the CPU) or run the job on a GPU worker")
    if importlib.util.find_spec("bitsandbytes") is None:
        return ("method 'qlora' needs the bitsandbytes package, which CPU installs leave out; "
                "on this GPU worker run pip install 'customllm[qlora]', or use method 'lora'")
    return None


def require_qlora() -> None:
    reason = qlora_unavailable_reason()
    if reason is not None:
        raise QLoRAUnavailable(reason)


def cpu_threads() -> int:
    """Cores this process may use (the affinity mask, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)
