"""What the embedder service takes from the shared settings."""

from __future__ import annotations

from dataclasses import dataclass

from services.common.config import Settings

SERVICE_NAME = "embedder"
APP_ID = "customllm-embedder"


@dataclass(frozen=True)
class EmbedderConfig:
    batch_size: int
    batch_window_s: float
    max_message_bytes: int
    model_id: str
    db_retry_attempts: int = 8


def embedder_config(settings: Settings) -> EmbedderConfig:
    return EmbedderConfig(
        batch_size=settings.embed_batch_size,
        batch_window_s=settings.embed_batch_window_s,
        # A work item holds the whole chunked document plus JSON framing.
        max_message_bytes=max(settings.max_document_bytes * 3, 1_000_000),
        model_id=settings.embedding_model_id,
    )
