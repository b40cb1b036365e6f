"""Hybrid fusion: term proximity, standardization and the weighted sum, against values worked
out by hand."""

import math

import pytest

from services.rag.fusion import (
    FusionWeights,
    fused_scores,
    proximity,
    standardized,
    term_signals,
)

pytestmark = pytest.mark.unit

IDF = {"a": 1.0, "b": 2.0, "c": 4.0}
POSITIONS = {"a": [1, 30], "b": [5], "c": [40]}


def test_proximity_takes_the_best_window_of_distinct_terms():
    # window 10: {a@1, b@5} = 3, {a@30, c@40} = 5 (40 - 30 = 10 fits)
    assert proximity(POSITIONS, IDF, window=10) == pytest.approx(5.0)
    # window 9: a@30 and c@40 no longer fit together; c alone = 4 beats {a, b} = 3
    assert proximity(POSITIONS, IDF, window=9) == pytest.approx(4.0)
    # window 40: every term fits once, a counted once though it occurs twice
    assert proximity(POSITIONS, IDF, window=40) == pytest.approx(7.0)


def test_proximity_counts_a_repeated_term_once_and_ignores_unweighted_terms():
    assert proximity({"a": [1, 2, 3]}, IDF, window=5) == pytest.approx(1.0)
    assert proximity({"zzz": [1], "a": [50]}, IDF, window=100) == pytest.approx(1.0)
    assert proximity({}, IDF, window=20) == 0.0


def test_standardized_is_a_population_z_score():
    spread = math.sqrt(2 / 3)  # values 1, 2, 3: mean 2, variance (1 + 0 + 1) / 3
    assert standardized([1.0, 2.0, 3.0]) == pytest.approx([-1 / spread, 0.0, 1 / spread])
    assert standardized([0.7, 0.7]) == [0.0, 0.0]  # no spread: nothing to tell apart
    assert standardized([]) == []


def _signals(cosine: list[float], bm25: list[float], near: list[float]) -> dict[str, list[float]]:
    flat = [1.0] * len(cosine)  # no spread: z = 0, weighs nothing
    return {"vector": cosine, "lexical": bm25, "phrase": flat, "proximity": near,
            "coverage": flat}


def test_term_signals_measure_a_phrase_a_sentence_and_the_whole_chunk():
    weights = FusionWeights(phrase_window=4, window=10)
    # window 4: b@5 alone (a@1 is 4 away: fits, a + b = 3) vs c@40 alone = 4
    # window 10: {a@30, c@40} = 5; the chunk holds a, b and c: 7
    assert term_signals(POSITIONS, IDF, weights) == pytest.approx((4.0, 5.0, 7.0))
    assert term_signals({}, IDF, weights) == (0.0, 0.0, 0.0)


def test_fused_scores_weigh_the_standardized_signals():
    weights = FusionWeights(vector=0.5, lexical=0.2, proximity=0.3)
    # cosine z = [-1, 1], bm25 z = [1, -1], proximity constant (z = 0)
    got = fused_scores(_signals([0.2, 0.4], [3.0, 1.0], [2.0, 2.0]), weights)
    assert got == pytest.approx([-0.5 + 0.2, 0.5 - 0.2])


def test_fused_scores_depend_on_score_margins_not_only_ranks():
    weights = FusionWeights(vector=0.5, lexical=0.5, proximity=0.0)
    # x leads BM25 by a wide margin and trails cosine by a hair: rank fusion would tie x and y
    bm25 = [10.0, 1.0, 0.0]
    cosine = [0.50, 0.51, 0.10]
    x, y, _ = fused_scores(_signals(cosine, bm25, [0.0, 0.0, 0.0]), weights)
    assert x > y


def test_coverage_prefers_the_chunk_holding_more_of_the_question():
    weights = FusionWeights(vector=0.0, lexical=0.0, phrase=0.0, proximity=0.0, coverage=1.0)
    more, fewer = (term_signals(p, IDF, weights)[2] for p in ({"a": [1], "c": [90]}, {"c": [3]}))
    got = fused_scores({"vector": [0.5, 0.5], "lexical": [2.0, 9.0], "phrase": [0.0, 0.0],
                        "proximity": [0.0, 0.0], "coverage": [more, fewer]}, weights)
    assert got[0] > got[1]


def test_weights_are_validated():
    with pytest.raises(ValueError):
        FusionWeights(vector=-0.1)
    with pytest.raises(ValueError):
        FusionWeights(coverage=-0.1)
    with pytest.raises(ValueError):
        FusionWeights(window=0)
    with pytest.raises(ValueError):
        FusionWeights(phrase_window=0)
    with pytest.raises(ValueError):
        FusionWeights(b=1.5)
    with pytest.raises(ValueError):
        fused_scores(_signals([0.1], [1.0, 2.0], [0.0]), FusionWeights())
    with pytest.raises(ValueError, match="coverage"):
        fused_scores({"vector": [0.1], "lexical": [1.0], "phrase": [0.0], "proximity": [0.0]},
                     FusionWeights())
