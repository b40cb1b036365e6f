"""Optional second-stage reranking of the fused candidate pool.

A cross-encoder reads question and chunk together, so it ranks better than the bi-encoder
(MiniLM) and BM25 the first stage uses, at the cost of one model call per candidate; it is
therefore applied only to the ``candidates`` pool, never to the whole index.

**No reranker model ships with the project.** Nothing is downloaded at run time (these machines
reach only package registries), so ``CrossEncoderReranker`` needs a local sentence-transformers
cross-encoder folder (e.g. an ms-marco MiniLM cross-encoder copied onto the machine), and
``reranker_from_path(None)`` returns ``None``: retrieval then keeps the first-stage order.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Protocol, runtime_checkable

from services.rag.retrieval import RetrievedChunk


@runtime_checkable
class Reranker(Protocol):
    """Reorders a candidate list; may rescore, must not add chunks (access was checked)."""

    def rerank(self, question: str, chunks: Sequence[RetrievedChunk]) -> list[RetrievedChunk]:
        ...


class CrossEncoderReranker:
    """sentence-transformers ``CrossEncoder`` from a local folder, loaded offline on first use
    (so building one at service start does not pay the model load until it is needed)."""

    def __init__(self, model_path: str | Path, batch_size: int = 32) -> None:
        self.model_path = Path(model_path).expanduser()
        if not self.model_path.is_dir():
            raise FileNotFoundError(
                f"cross-encoder folder {self.model_path} does not exist; no reranker model ships "
                "with customllm, copy a sentence-transformers cross-encoder there")
        self.batch_size = batch_size
        self._model: object | None = None
        self._lock = threading.Lock()

    def rerank(self, question: str, chunks: Sequence[RetrievedChunk]) -> list[RetrievedChunk]:
        """Chunks sorted by cross-encoder score (ties: chunk id), score replaced by it."""
        if not chunks:
            return []
        scores = self._predict([(question, chunk.text) for chunk in chunks])
        scored = [replace(chunk, score=float(s)) for chunk, s in zip(chunks, scores, strict=True)]
        return sorted(scored, key=lambda c: (-c.score, c.chunk_id))

    def _predict(self, pairs: list[tuple[str, str]]) -> Sequence[float]:
        with self._lock:  # concurrent first loads would corrupt each other (see embeddings.py)
            if self._model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                from sentence_transformers import CrossEncoder

                self._model = CrossEncoder(str(self.model_path), device="cpu",
                                           local_files_only=True)
        return self._model.predict(  # type: ignore[attr-defined]
            pairs, batch_size=self.batch_size, show_progress_bar=False)


def reranker_from_path(model_path: str | Path | None) -> Reranker | None:
    """A cross-encoder reranker when a folder is configured, else ``None`` (no reranking)."""
    if model_path is None or str(model_path) == "":
        return None
    return CrossEncoderReranker(model_path)
