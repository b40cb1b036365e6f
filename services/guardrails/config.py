"""The guardrails service's own settings; connections, identity and the embedding model are
the shared settings."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.guardrails.policy import PolicyStore

SERVICE_NAME = "guardrails"
APP_ID = "customllm-guardrails"
MAX_REQUEST_BYTES = 1_000_000
MAX_DRAFT_BYTES = 16_000_000
JUDGE_MAX_TOKENS = 256
JUDGE_TIMEOUT_S = 60.0


class GuardrailsSettings(BaseSettings):
    """Frozen: a worker keeps the configuration it started with (policies themselves are files,
    reloaded when they change)."""

    model_config = SettingsConfigDict(env_prefix="CUSTOMLLM_", frozen=True, extra="ignore")

    guardrails_policy_dir: Path | None = Field(
        default=None, description="Folder of YAML policies (<domain>.yaml); default: the "
        "packaged policies in services/guardrails/policies.")
    guardrails_pii_findings_lookup: bool = Field(
        default=True, description="The output stage looks cited chunks' PII findings up in "
        "the database (stored at ingest) instead of analysing every chunk of every answer; "
        "false: analyse them all (the behaviour before the store, kept as the benchmark's "
        "baseline).")
    guardrails_pii_indexer: bool = Field(
        default=True, description="Analyse indexed chunks for PII in the background and store "
        "the findings the output stage looks up (services/guardrails/pii_indexer.py); false: "
        "each chunk is analysed when it is first cited, and stored then.")
    guardrails_pii_index_every_s: float = Field(
        default=5.0, gt=0, description="How often the indexer looks for chunks without "
        "findings.")
    guardrails_pii_prune_after_h: float = Field(
        default=24.0, ge=0, description="Stored PII findings of an older detector build are "
        "deleted this many hours after they were stored (checked hourly; the delay covers a "
        "rolling upgrade's old replicas); 0: never deleted.")
    guardrails_pii_index_batch: int = Field(
        default=32, ge=1, le=1000, description="Chunks analysed per batch (one transaction); "
        "the indexer pauses between batches so questions keep the CPU.")


@lru_cache(maxsize=1)
def guardrails_settings() -> GuardrailsSettings:
    return GuardrailsSettings()


def policy_store(config: GuardrailsSettings | None = None) -> PolicyStore:
    """Policies from ``CUSTOMLLM_GUARDRAILS_POLICY_DIR`` (default: the packaged ones), reloaded
    when a file changes."""
    return PolicyStore((config or guardrails_settings()).guardrails_policy_dir)
