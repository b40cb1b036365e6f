"""How close the retrieved chunks are to the question, for abstention.

Fused (RRF) scores only rank; they cannot say "nothing here is about the question". The cosine
similarity of the best retrieved chunk can.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sqlalchemy import text
from sqlalchemy.engine import Engine


def best_similarity(engine: Engine, vector: np.ndarray, chunk_ids: Sequence[str]) -> float | None:
    if not chunk_ids:
        return None
    with engine.connect() as conn:
        value = conn.execute(text(
            "SELECT max(1 - (embedding <=> :vector)) FROM chunks WHERE chunk_id = ANY(:ids)"),
            {"vector": vector, "ids": list(chunk_ids)}).scalar()
    return None if value is None else float(value)
