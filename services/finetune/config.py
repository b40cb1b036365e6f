"""The finetune worker's own settings (``CUSTOMLLM_FINETUNE_*`` and the MLflow URI), and the
runtime view that adds what it shares with others (the served base model, the adapters folder,
the broker)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

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


class FinetuneSettings(BaseSettings):
    """Frozen: a worker keeps the configuration it started with."""

    model_config = SettingsConfigDict(env_prefix="CUSTOMLLM_FINETUNE_", frozen=True,
                                      extra="ignore", populate_by_name=True)

    output_dir: Path | None = Field(
        default=None, description="Job work folders (checkpoints, trained adapters); default "
        "<state>/finetune. Must be shared by every finetune worker for a crashed job to resume "
        "on another one.")
    lease_s: float = Field(
        default=60.0, description="A running job whose heartbeat is older than this is taken "
        "over by another worker (its worker is presumed dead).")
    max_attempts: int = Field(
        default=3, description="Attempts per job; a job whose worker died this many times is "
        "failed with the reason instead of resumed again.")
    progress_every_s: float = Field(
        default=2.0, description="At most one progress event per job this often.")
    poll_s: float = Field(default=2.0, description="How often an idle worker looks for a "
                          "queued job.")
    eval_timeout_s: float = Field(
        default=300.0, description="Per-question reply timeout of the promotion gate's "
        "evaluation runs.")
    mlflow_tracking_uri: str | None = Field(
        default=None, validation_alias="CUSTOMLLM_MLFLOW_TRACKING_URI",
        description="MLflow tracking URI; default: a local store under <state>/mlflow.")


@lru_cache(maxsize=1)
def finetune_settings() -> FinetuneSettings:
    return FinetuneSettings()


def finetune_config(settings: Settings, own: FinetuneSettings | None = None) -> FinetuneConfig:
    own = own or finetune_settings()
    state = settings.state_path
    return FinetuneConfig(
        output_dir=(own.output_dir or state / "finetune").expanduser(),
        adapters_dir=(settings.adapters_dir or state / "adapters").expanduser(),
        base_model=settings.local_model_id,
        lease_s=own.lease_s,
        max_attempts=own.max_attempts,
        progress_every_s=own.progress_every_s,
        poll_s=own.poll_s,
        eval_timeout_s=own.eval_timeout_s,
        kafka_bootstrap=settings.kafka_bootstrap,
    )
