"""How the hybrid mode orders its candidate pool: a weighted sum of standardized scores.

Why not reciprocal rank fusion (the first version): RRF keeps only ranks, so a chunk that BM25
scores far above every other counts the same as one that barely leads, and on SQuAD-like data
it sat within a point of a naive cosine + rank-bm25 RRF. Combining the scores themselves keeps
that margin. Each signal is standardized over the pool (z-score: mean 0, standard deviation 1),
so cosine (about 0.2–0.8) and BM25 (unbounded, scale set by idf) become comparable without a
per-corpus calibration, then weighted:

* ``vector``: cosine of the question and chunk embeddings (paraphrases, synonyms);
* ``lexical``: BM25 (rare exact words: names, numbers);
* ``phrase``, ``proximity`` and ``coverage``: the idf mass of distinct question terms the chunk
  holds within ``phrase_window`` word positions (a phrase), within ``window`` (about a
  sentence) and anywhere in it. A question usually paraphrases one sentence and keeps some of
  its phrases, so its terms cluster in the right chunk but scatter in a chunk that merely
  shares the topic; BM25 and a single chunk vector both ignore where terms occur, and BM25
  rewards repeating a term where coverage rewards holding more of the question's terms.

The weights, windows and BM25's k1/b were chosen on the tune part of
``benchmarks/query_retrieval.py`` only (the held-out articles and the second data set chose
nothing). First a listwise logistic fit on the tune part said which signals carry weight
(cosine, the three term-position scales; BM25 next to nothing once coverage is in); then a grid
over the weights on the tune part, taking the middle of its flat top rather than its best
point: every mix with vector 0.55, lexical 0.05-0.1, phrase 0.05-0.15, proximity 0.1-0.15 and
coverage 0.1-0.25 was within half a point of hit@1 of the others. Windows of 15 or 30,
k1 = 1.2 / b = 0.75, ordered term pairs and sentence-level vectors measured no better.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class FusionWeights:
    """Weights of the standardized signals, the proximity window, and BM25's parameters."""

    vector: float = 0.55
    lexical: float = 0.05
    phrase: float = 0.1
    proximity: float = 0.1
    coverage: float = 0.2
    phrase_window: int = 8  # word positions (stopwords count), a phrase
    window: int = 20  # about one sentence
    k1: float = 0.9  # BM25 term-frequency saturation
    b: float = 0.4  # BM25 length normalization

    def __post_init__(self) -> None:
        if (min(self.vector, self.lexical, self.phrase, self.proximity, self.coverage) < 0
                or min(self.window, self.phrase_window) < 1):
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


def term_signals(positions: Mapping[str, Sequence[int]], idf: Mapping[str, float],
                 weights: FusionWeights) -> tuple[float, float, float]:
    """(phrase, proximity, coverage) of one chunk: ``proximity`` at the phrase window, at the
    sentence window, and over the whole chunk (the idf of every question term it holds)."""
    held = sum(idf.get(term, 0.0) for term, found in positions.items() if found)
    return (proximity(positions, idf, weights.phrase_window),
            proximity(positions, idf, weights.window), held)


def standardized(values: Sequence[float]) -> list[float]:
    """z-scores; all zeros when the values do not vary (nothing to tell apart)."""
    if not values:
        return []
    mean = sum(values) / len(values)
    spread = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
    if spread < 1e-12:
        return [0.0] * len(values)
    return [(v - mean) / spread for v in values]


SIGNALS: tuple[str, ...] = ("vector", "lexical", "phrase", "proximity", "coverage")


def fused_scores(signals: Mapping[str, Sequence[float]], weights: FusionWeights) -> list[float]:
    """One score per pool member: the weighted sum of its standardized signals. ``signals``
    maps each name of ``SIGNALS`` (the weight of the same name) to one value per member."""
    missing = [name for name in SIGNALS if name not in signals]
    if missing:
        raise ValueError(f"missing fusion signals: {', '.join(missing)}")
    if len({len(signals[name]) for name in SIGNALS}) > 1:
        raise ValueError("every pool member needs every signal")
    size = len(signals[SIGNALS[0]])
    scores = [0.0] * size
    for name in SIGNALS:
        weight = getattr(weights, name)
        if weight:
            scores = [s + weight * z for s, z in zip(scores, standardized(signals[name]),
                                                     strict=True)]
    return scores
