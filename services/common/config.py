"""One settings object for every service.

Everything is read from environment variables (prefix ``CUSTOMLLM_``) exactly once, here, so no
module reads ``os.environ`` on its own. Defaults run the embedded local stack, so a newcomer needs
no configuration at all.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[2]


class Settings(BaseSettings):
    """Frozen so a service cannot drift from the configuration it started with."""

    model_config = SettingsConfigDict(env_prefix="CUSTOMLLM_", frozen=True, extra="ignore")

    # Local stack
    state_dir: Path = Field(default=Path(".customllm"), description="Data, logs and pid files.")
    kafka_port: int = 19092
    kafka_controller_port: int = 19093
    kafka_heap: str = "512m"
    postgres_port: int = 15432

    # Connections (production points these at real clusters)
    kafka_bootstrap: str = "127.0.0.1:19092"
    database_url: SecretStr | None = Field(
        default=None, description="SQLAlchemy URL; defaults to the embedded Postgres."
    )

    # Topics
    topic_partitions: int = 3
    topic_replication: int = 1

    # Ingestion
    max_document_bytes: int = 2_000_000
    chunk_min_words: int = 40
    chunk_max_words: int = 180
    embed_batch_size: int = 64
    embed_batch_window_s: float = 0.2

    # Embeddings
    embedding_model_id: str = "sentence-transformers/all-MiniLM-L6-v2"
    embedding_model_path: Path | None = Field(
        default=None, description="sentence-transformers folder; defaults to the packaged MiniLM."
    )
    embedding_dim: int = 384

    # Telemetry
    otel_exporter: Literal["none", "console", "otlp"] = "none"
    otel_endpoint: str = "http://127.0.0.1:4318/v1/traces"
    log_level: str = "INFO"

    @property
    def sqlalchemy_url(self) -> str:
        """A property, not a field, so printing the settings never shows a password."""
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.postgres_port}/customllm"

    @property
    def state_path(self) -> Path:
        return self.state_dir.expanduser().resolve()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Cached so every module of a process shares one view of the configuration."""
    return Settings()
