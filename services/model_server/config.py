"""The model server's own settings; the model itself is the shared generation settings."""

from __future__ import annotations

from functools import lru_cache

from pydantic_settings import BaseSettings, SettingsConfigDict


class ModelServerSettings(BaseSettings):
    """Frozen: a process keeps the configuration it started with."""

    model_config = SettingsConfigDict(env_prefix="CUSTOMLLM_", frozen=True, extra="ignore")

    # Internal: it answers raw prompts without retrieval or guardrails (a key is required).
    model_server_host: str = "127.0.0.1"
    model_server_port: int = 18081


@lru_cache(maxsize=1)
def model_server_settings() -> ModelServerSettings:
    return ModelServerSettings()
