"""How close the retrieved chunks are to the question, for abstention.

Fused (RRF) scores only rank; they cannot say "nothing here is about the question". The cosine
similarity of the best retrieved chunk can.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sqlalchemy import text
from sqlalchemy.engine import Engine


def best_similarity(engine: Engine, vector: np.ndarray, chunk_ids: Sequence[str],
                    model_id: str | None = None) -> float | None:
    """Best cosine of ``vector`` (from ``model_id``; None: the active model) with the chunks'
    vectors of that same model."""
    if not chunk_ids:
        return None
    with engine.connect() as conn:
        value = conn.execute(text(
            "SELECT max(1 - (e.embedding <=> :vector)) FROM chunk_embeddings e "
            "WHERE e.chunk_id = ANY(:ids) AND e.model_id = coalesce(CAST(:model AS text), "
            "(SELECT model_id FROM index_models WHERE state = 'active'))"),
            {"vector": vector, "ids": list(chunk_ids), "model": model_id}).scalar()
    return None if value is None else float(value)
