"""The ingest service's own settings; connections and the embedding model id are the shared
settings. The CLI's publishers read ``max_document_bytes`` from here too, so a document the
worker would refuse is refused before it is sent."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.ingest.chunking import ChunkingConfig
from services.ingest.content import DEFAULT_MAX_FILE_BYTES, FileAccess

SERVICE_NAME = "ingest"
APP_ID = "customllm-ingest"


class IngestSettings(BaseSettings):
    """Frozen: a worker keeps the configuration it started with."""

    model_config = SettingsConfigDict(env_prefix="CUSTOMLLM_", frozen=True, extra="ignore")

    max_document_bytes: int = Field(
        default=2_000_000, description="Larger change events go to the DLQ as too_large.")
    chunk_min_words: int = 40
    chunk_max_words: int = 180
    ingest_file_roots: str | None = Field(
        default=None, description="os.pathsep-separated folders a content_ref may name; "
        "default <state>/files, a folder only the platform's own tools write to.")
    ingest_max_file_bytes: int = Field(
        default=DEFAULT_MAX_FILE_BYTES, description="Largest file a content_ref may name.")

    @property
    def chunking(self) -> ChunkingConfig:
        return ChunkingConfig(min_words=self.chunk_min_words, max_words=self.chunk_max_words)

    def file_access(self, state_path: Path) -> FileAccess:
        raw = self.ingest_file_roots
        roots = [Path(p) for p in raw.split(os.pathsep) if p] if raw else [state_path / "files"]
        return FileAccess(tuple(root.expanduser().resolve() for root in roots),
                          self.ingest_max_file_bytes)


@lru_cache(maxsize=1)
def ingest_settings() -> IngestSettings:
    return IngestSettings()
