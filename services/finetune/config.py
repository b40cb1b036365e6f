"""The finetune worker's own settings (``CUSTOMLLM_FINETUNE_*`` and the MLflow URI), and the
runtime view that adds what it shares with others (the served base model, the adapters folder,
the broker)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

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
    # --- the retraining policy (services/finetune/auto_retrain.py) -------------------------
    auto_enabled: bool = Field(
        default=False, description="Queue a fine-tuning job automatically when the retraining "
        "policy says so (enough newly approved examples, or the schedule).")
    auto_adapter: str = Field(
        default="assistant", description="Registry name the automatic jobs train (each "
        "registers its next version, gated against the promoted one).")
    auto_min_new_examples: int = Field(
        default=20, ge=1, description="Queue a job once this many approved examples (matching "
        "the filter below) are not in the previous automatic job's snapshot.")
    auto_every_s: float | None = Field(
        default=None, gt=0, description="Schedule: also queue a job when this long has passed "
        "since the previous automatic job and at least one new example was approved (null: "
        "only the threshold triggers).")
    auto_min_interval_s: float = Field(
        default=0.0, ge=0, description="Never queue automatic jobs closer together than this.")
    auto_check_every_s: float = Field(
        default=60.0, gt=0, description="How often the worker evaluates the policy.")
    auto_method: Literal["lora", "qlora", "full"] = Field(
        default="lora", description="Training method of the automatic jobs.")
    auto_hyperparameters: dict[str, Any] = Field(
        default_factory=lambda: {"max_steps": 60, "lora_r": 8, "lora_alpha": 16},
        description="TrainingConfig fields of the automatic jobs (JSON).")
    auto_sources: list[str] = Field(
        default_factory=list, description="Approved examples of these sources only (JSON "
        "list; empty: every source).")
    auto_tags: list[str] = Field(
        default_factory=list, description="Approved examples with any of these tags only "
        "(JSON list; empty: any).")
    auto_max_privacy: Literal["public", "internal", "confidential", "restricted"] = Field(
        default="internal", description="Highest privacy class of the examples trained on.")
    auto_testset: str | None = Field(
        default=None, description="JSONL test set of the promotion gate (a path the worker "
        "can read). Without one the automatic versions stay candidates.")
    auto_evaluation: dict[str, Any] = Field(
        default_factory=dict, description="Further fields of the gate's evaluation as JSON "
        "(tolerances, max_tokens, limit, doc_id_prefix, domain, top_k, n_boot).")
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
        adapters_dir=settings.adapters_path,
        base_model=settings.local_model_id,
        lease_s=own.lease_s,
        max_attempts=own.max_attempts,
        progress_every_s=own.progress_every_s,
        poll_s=own.poll_s,
        eval_timeout_s=own.eval_timeout_s,
        kafka_bootstrap=settings.kafka_bootstrap,
    )
