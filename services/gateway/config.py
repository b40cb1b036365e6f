"""The gateway's own settings (``CUSTOMLLM_GATEWAY_*`` and the reply timeout); connections,
API keys and OIDC are the shared settings."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class GatewaySettings(BaseSettings):
    """Frozen: a process keeps the configuration it started with."""

    model_config = SettingsConfigDict(env_prefix="CUSTOMLLM_", frozen=True, extra="ignore")

    gateway_host: str = "127.0.0.1"
    gateway_port: int = 18080
    gateway_max_inflight: int = Field(
        default=64, description="Requests in flight before the gateway answers 429.")
    gateway_max_body_bytes: int = Field(
        default=256_000, description="Larger request bodies are refused with 413 before they "
        "are read.")
    rag_reply_timeout_s: float = Field(
        default=120.0, description="How long a request waits for its reply before a 504.")
    gateway_shutdown_grace_s: float = Field(
        default=15.0, description="On SIGTERM, how long requests in flight may finish before "
        "they are cut off: without a bound a request waiting on a broker that is gone keeps "
        "the process, and its port, for the whole reply timeout.")


@lru_cache(maxsize=1)
def gateway_settings() -> GatewaySettings:
    return GatewaySettings()
