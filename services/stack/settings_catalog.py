"""Every settings class of the platform, so tools can tell a real ``CUSTOMLLM_*`` variable
from a typo (pydantic-settings ignores unknown variables, so a misspelt one would pass
unnoticed). Lives with the launcher because only tools may import every service."""

from __future__ import annotations

from pydantic_settings import BaseSettings

from services.common.config import Settings
from services.common.onnx_encoder import OnnxSettings
from services.console.config import ConsoleSettings
from services.embedder.config import EmbedderSettings
from services.finetune.config import FinetuneSettings
from services.gateway.config import GatewaySettings
from services.guardrails.config import GuardrailsSettings
from services.guardrails.encoder import EncoderSettings
from services.ingest.config import IngestSettings
from services.model_server.config import ModelServerSettings
from services.rag.config import RagSettings

SETTINGS: tuple[type[BaseSettings], ...] = (
    Settings, ConsoleSettings, EmbedderSettings, FinetuneSettings, GatewaySettings,
    GuardrailsSettings, IngestSettings, ModelServerSettings, RagSettings, OnnxSettings,
    EncoderSettings,
)


def known_variables() -> set[str]:
    """Every environment variable some settings class reads."""
    names: set[str] = set()
    for settings in SETTINGS:
        prefix = settings.model_config.get("env_prefix", "")
        for name, field in settings.model_fields.items():
            alias = field.validation_alias
            names.add(alias.upper() if isinstance(alias, str) else f"{prefix}{name}".upper())
    return names
