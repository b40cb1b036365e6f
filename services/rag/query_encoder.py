"""Encodes questions with the model the index currently serves.

The active model is re-read from ``index_models`` at most every second, so ``customllm index
switch`` takes effect without a restart; the encoder for a model other than the configured one
is loaded on first use (a shipped wheel; nothing is downloaded). The model id goes with the
vector to retrieval, so one query never compares a vector of one model with another's.
"""

from __future__ import annotations

import threading

import numpy as np
from sqlalchemy.engine import Engine

from services.common.embeddings import Embedder, canonical_model_id, embedder_for
from services.common.events import QuestionVector
from services.common.index_registry import ActiveModel


class QueryEncoder:
    def __init__(self, engine: Engine, configured: Embedder, ttl_s: float = 1.0) -> None:
        self.configured = configured
        self.active = ActiveModel(engine, configured.model_id, ttl_s)
        self._models: dict[str, Embedder] = {canonical_model_id(configured.model_id): configured}
        self._lock = threading.Lock()

    def embedder(self, model_id: str) -> Embedder:
        model_id = canonical_model_id(model_id)
        with self._lock:
            found = self._models.get(model_id)
            if found is None:
                found = self._models[model_id] = embedder_for(model_id, dim=self.configured.dim)
                found.threads = self.configured.threads
        return found

    def encode(self, question: str, carried: QuestionVector | None = None,
               ) -> tuple[str, np.ndarray]:
        """(model id, unit vector) of ``question`` under the active model. ``carried``: the
        input stage's vector of the same question (signed hand-off), used when it is of the
        active model and of its width, which saves encoding the question again; anything else
        is encoded here."""
        model_id = self.active.get()
        reused = usable_vector(carried, model_id, self.configured.dim)
        if reused is not None:
            return model_id, reused
        return model_id, self.embedder(model_id).encode_queries([question])[0]


def usable_vector(carried: QuestionVector | None, model_id: str, dim: int) -> np.ndarray | None:
    """``carried`` as a unit vector when it is ``model_id``'s and ``dim`` wide, else None."""
    if carried is None or canonical_model_id(carried.model_id) != canonical_model_id(model_id):
        return None
    try:
        vector = carried.array()
    except ValueError:  # not base64, or not a whole number of float32s
        return None
    if vector.shape != (dim,) or not np.all(np.isfinite(vector)):
        return None
    norm = float(np.linalg.norm(vector))
    if not 0.99 < norm < 1.01:  # every shipped encoder's query vectors are unit-normalized
        return None
    return vector
