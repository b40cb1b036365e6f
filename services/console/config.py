"""The console's own settings (``CUSTOMLLM_CONSOLE_*``); connections come from the platform's
settings (database, API keys, OIDC, adapters directory)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.common.config import Settings


class ConsoleSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CUSTOMLLM_CONSOLE_", frozen=True,
                                      extra="ignore")

    host: str = "127.0.0.1"
    port: int = 18090
    session_max_age_s: int = Field(default=8 * 3600, description="A login lasts a working day.")
    session_secret_file: Path | None = Field(
        default=None, description="Key that signs session cookies; default "
        "<state>/secrets/console-session.key, generated on first start.")
    secure_cookie: bool = Field(
        default=False, description="Send the session cookie over HTTPS only; set it behind TLS.")
    trace_url: str | None = Field(
        default=None, description="Trace viewer link with {trace_id}; default: the local "
        "viewer (`customllm up --observe`) on the OTLP endpoint's host.")
    page_size: int = 50


def trace_link(console: ConsoleSettings, settings: Settings, trace_id: str | None) -> str | None:
    if not trace_id:
        return None
    if console.trace_url:
        return console.trace_url.format(trace_id=trace_id)
    endpoint = urlparse(settings.otel_endpoint)
    return f"{endpoint.scheme}://{endpoint.netloc}/traces/{trace_id}"


def adapters_dir(settings: Settings) -> Path:
    """The serving library the fine-tuning worker writes (same default as its config)."""
    return settings.adapters_path
