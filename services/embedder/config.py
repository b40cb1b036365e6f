"""The embedder's own settings (``CUSTOMLLM_EMBED_*``); the connections and the embedding model
are the shared settings."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

SERVICE_NAME = "embedder"
APP_ID = "customllm-embedder"


class EmbedderSettings(BaseSettings):
    """Frozen: a worker keeps the configuration it started with."""

    model_config = SettingsConfigDict(env_prefix="CUSTOMLLM_", frozen=True, extra="ignore")

    embed_batch_size: int = Field(default=64, description="Work items per model call.")
    embed_batch_window_s: float = Field(
        default=0.2, description="How long a batch waits to fill before it is embedded.")
    embed_slice_chunks: int = Field(
        default=64, description="Chunks per model call within a batch: the next slice is "
        "encoded while the previous slice's documents are written to Postgres.")
    embed_injection_head: str = Field(
        default="", description="The injection head the ingest scan reads on each chunk's "
        "vector: empty for the guardrails' own (retrained in the state folder, else shipped), "
        "a file, or 'off' (rules only).")
    embed_db_retry_attempts: int = Field(
        default=8, description="Tries per database write while Postgres is unreachable, with "
        "backoff; then the worker exits and the batch is re-read.")


@lru_cache(maxsize=1)
def embedder_settings() -> EmbedderSettings:
    return EmbedderSettings()
