"""How the hybrid mode orders its candidate pool: a weighted sum of standardized scores.

Why not reciprocal rank fusion (the first version): RRF keeps only ranks, so a chunk that BM25
scores far above every other counts the same as one that barely leads, and on SQuAD-like data
it sat within a point of a naive cosine + rank-bm25 RRF. Combining the scores themselves keeps
that margin. Each signal is standardized over the pool (z-score: mean 0, standard deviation 1),
so cosine (about 0.2–0.8) and BM25 (unbounded, scale set by idf) become comparable without a
per-corpus calibration, then weighted:

* ``vector``: cosine of the question and chunk embeddings (paraphrases, synonyms);
* ``lexical``: BM25 (rare exact words: names, numbers);
* ``proximity``: the largest idf mass of distinct question terms inside one window of
  ``window`` word positions. A question usually paraphrases one sentence, so its terms cluster
  in the right chunk but scatter in a chunk that merely shares the topic; BM25 and a single
  chunk vector both ignore where terms occur.

The weights, window and BM25's k1/b were chosen on the tune part of
``benchmarks/query_retrieval.py`` only (the held-out articles and the second data set chose
nothing), from the middle of a flat region rather than at its best point: on the tune part every
mix with vector 0.5–0.7, lexical 0.1–0.2, proximity 0.15–0.4 and window 20 was within a point
of MRR@10 of the others. Windows of 15 or 30, k1 = 1.2 / b = 0.75, and two more signals
(ordered term pairs, idf coverage) measured no better.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class FusionWeights:
    """Weights of the standardized signals, the proximity window, and BM25's parameters."""

    vector: float = 0.6
    lexical: float = 0.15
    proximity: float = 0.25
    window: int = 20  # word positions (stopwords count), about one sentence
    k1: float = 0.9  # BM25 term-frequency saturation
    b: float = 0.4  # BM25 length normalization

    def __post_init__(self) -> None:
        if min(self.vector, self.lexical, self.proximity) < 0 or self.window < 1:
            raise ValueError(f"invalid fusion weights: {self}")
        if self.k1 < 0 or not 0 <= self.b <= 1:
            raise ValueError(f"invalid BM25 parameters: k1={self.k1}, b={self.b}")


def proximity(positions: Mapping[str, Sequence[int]], idf: Mapping[str, float],
              window: int) -> float:
    """Largest sum of idf over distinct terms whose positions lie within ``window`` of each
    other (last minus first ≤ ``window``). Terms without an idf weigh nothing."""
    events = sorted((pos, term) for term, found in positions.items() if idf.get(term, 0) > 0
                    for pos in found)
    counts: dict[str, int] = {}
    best = total = 0.0
    start = 0
    for pos, term in events:
        if counts.get(term, 0) == 0:
            total += idf[term]
        counts[term] = counts.get(term, 0) + 1
        while events[start][0] < pos - window:
            left = events[start][1]
            counts[left] -= 1
            if counts[left] == 0:
                total -= idf[left]
            start += 1
        best = max(best, total)
    return best


def standardized(values: Sequence[float]) -> list[float]:
    """z-scores; all zeros when the values do not vary (nothing to tell apart)."""
    if not values:
        return []
    mean = sum(values) / len(values)
    spread = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
    if spread < 1e-12:
        return [0.0] * len(values)
    return [(v - mean) / spread for v in values]


def fused_scores(cosine: Sequence[float], bm25: Sequence[float], near: Sequence[float],
                 weights: FusionWeights) -> list[float]:
    """One score per pool member: the weighted sum of its standardized signals."""
    if not len(cosine) == len(bm25) == len(near):
        raise ValueError("every pool member needs all three signals")
    return [weights.vector * v + weights.lexical * lex + weights.proximity * p
            for v, lex, p in zip(standardized(cosine), standardized(bm25), standardized(near),
                                 strict=True)]
