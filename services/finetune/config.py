"""What the finetune worker takes from the shared settings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from services.common.config import Settings

SERVICE_NAME = "finetune"
APP_ID = "customllm-finetune"
MAX_REQUEST_BYTES = 8_000_000  # inline evaluation cases can make a request large


@dataclass(frozen=True)
class FinetuneConfig:
    """Frozen: a worker keeps the configuration it started with."""

    output_dir: Path  # <output_dir>/<job_id>/{checkpoints,adapter}
    adapters_dir: Path  # the serving library: <name>@v<N>/ per version, <name> → promoted
    base_model: str
    lease_s: float
    max_attempts: int
    progress_every_s: float
    poll_s: float
    eval_timeout_s: float
    kafka_bootstrap: str


def finetune_config(settings: Settings) -> FinetuneConfig:
    state = settings.state_path
    return FinetuneConfig(
        output_dir=(settings.finetune_output_dir or state / "finetune").expanduser(),
        adapters_dir=(settings.adapters_dir or state / "adapters").expanduser(),
        base_model=settings.local_model_id,
        lease_s=settings.finetune_lease_s,
        max_attempts=settings.finetune_max_attempts,
        progress_every_s=settings.finetune_progress_every_s,
        poll_s=settings.finetune_poll_s,
        eval_timeout_s=settings.finetune_eval_timeout_s,
        kafka_bootstrap=settings.kafka_bootstrap,
    )
