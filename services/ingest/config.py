"""What the ingest service takes from the shared settings."""

from __future__ import annotations

from dataclasses import dataclass

from services.common.config import Settings
from services.ingest.chunking import ChunkingConfig
from services.ingest.content import FileAccess, file_access_from_env

SERVICE_NAME = "ingest"
APP_ID = "customllm-ingest"


@dataclass(frozen=True)
class IngestConfig:
    max_document_bytes: int
    chunking: ChunkingConfig
    model_id: str
    files: FileAccess = FileAccess()


def ingest_config(settings: Settings) -> IngestConfig:
    return IngestConfig(
        max_document_bytes=settings.max_document_bytes,
        chunking=ChunkingConfig(min_words=settings.chunk_min_words,
                                max_words=settings.chunk_max_words),
        model_id=settings.embedding_model_id,
        files=file_access_from_env(settings.state_path),
    )
