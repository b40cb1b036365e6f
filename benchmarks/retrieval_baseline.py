"""The naive baseline every platform mode is compared with, and the ranking metrics.

What a new user writes in 30 lines: MiniLM vectors of the whole paragraphs with exact cosine
(numpy), ``rank_bm25.BM25Okapi`` over lower-cased word tokens, and the two full rankings fused by
reciprocal rank fusion (k = 60). No chunking, no access control, no database: if the platform
cannot beat this on the same questions, its machinery costs quality.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

RRF_K = 60
TOP = 10
NAIVE_MODES = ("naive_rrf", "bm25", "cosine")
_WORD = re.compile(r"\w+")


def tokenize(text: str) -> list[str]:
    return _WORD.findall(text.lower())


class NaiveBaseline:
    """Exact cosine, rank-bm25 and their RRF over one list of documents."""

    def __init__(self, doc_ids: Sequence[str], texts: Sequence[str], vectors: np.ndarray) -> None:
        from rank_bm25 import BM25Okapi

        self.doc_ids = list(doc_ids)
        self.vectors = np.asarray(vectors, dtype=np.float32)
        self.bm25 = BM25Okapi([tokenize(t) for t in texts])

    def rank(self, question: str, vector: np.ndarray) -> dict[str, list[str]]:
        """Top ``TOP`` doc ids per naive mode (ties: document order, as a stable sort gives)."""
        bm25 = np.argsort(-self.bm25.get_scores(tokenize(question)), kind="stable")
        cosine = np.argsort(-(self.vectors @ np.asarray(vector, dtype=np.float32)),
                            kind="stable")
        fused = np.zeros(len(self.doc_ids))
        for order in (bm25, cosine):
            fused[order] += 1.0 / (RRF_K + np.arange(1, len(order) + 1))
        rrf = np.argsort(-fused, kind="stable")
        return {name: [self.doc_ids[i] for i in order[:TOP]]
                for name, order in (("naive_rrf", rrf), ("bm25", bm25), ("cosine", cosine))}


def first_rank(gold: str, ranked: Sequence[str]) -> int | None:
    """1-based position of the first result from the gold document, None when absent."""
    for position, doc_id in enumerate(ranked, start=1):
        if doc_id == gold:
            return position
    return None


def quality(ranks: Sequence[int | None], top: int = TOP) -> dict[str, float]:
    """hit@1/5/10 and MRR@10 of a list of first-hit ranks (None: not in the top ``top``)."""
    n = max(len(ranks), 1)
    found = [r for r in ranks if r is not None and r <= top]
    metrics = {f"hit@{k}": round(sum(1 for r in found if r <= k) / n, 4) for k in (1, 5, 10)}
    metrics["mrr@10"] = round(sum(1.0 / r for r in found) / n, 4)
    return metrics
