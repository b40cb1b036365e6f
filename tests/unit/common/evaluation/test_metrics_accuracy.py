"""Answer accuracy (EM, SQuAD F1, ROUGE-L), retrieval (hit, recall, RR, nDCG) and citations,
with the expected values computed by hand in the comments."""

import math

import pytest

from services.common.evaluation.metrics import (
    citation_precision,
    citation_recall,
    exact_match,
    hit_at_k,
    ndcg_at_k,
    recall_at_k,
    reciprocal_rank,
    rouge_l,
    token_f1,
)

pytestmark = pytest.mark.unit


# ------------------------------------------------------------------------------ exact match

def test_exact_match_normalizes_and_takes_the_max():
    assert exact_match("The Eiffel Tower!", ["eiffel tower"]) == 1.0
    assert exact_match("Eiffel", ["Eiffel Tower"]) == 0.0
    assert exact_match("Paris", ["Lyon", "paris."]) == 1.0


def test_exact_match_edge_cases():
    assert exact_match("Paris", []) is None          # no gold: undefined, not 0
    assert exact_match("Paris", None) is None
    assert exact_match("Paris", ["", "  "]) is None  # blank references do not count
    assert exact_match("", ["Paris"]) == 0.0         # empty answer is simply wrong
    assert exact_match(None, ["Paris"]) == 0.0


# --------------------------------------------------------------------------------------- F1

def test_f1_hand_computed():
    # "the cat sat" -> [cat, sat]; "a cat sat down" -> [cat, sat, down]
    # common = 2, precision = 2/2 = 1, recall = 2/3, F1 = 2*1*(2/3) / (1 + 2/3) = 0.8
    assert token_f1("the cat sat", ["a cat sat down"]) == pytest.approx(0.8)


def test_f1_counts_multisets():
    # [cat, cat] vs [cat]: common = min(2, 1) = 1, P = 1/2, R = 1/1, F1 = 2*.5*1/1.5 = 2/3
    assert token_f1("the cat cat", ["cat"]) == pytest.approx(2 / 3)


def test_f1_max_over_references_and_no_overlap():
    assert token_f1("cat sat", ["dog", "cat sat"]) == 1.0
    assert token_f1("dog", ["cat"]) == 0.0


def test_f1_edge_cases():
    assert token_f1("Paris", []) is None
    assert token_f1("", ["Paris"]) == 0.0            # empty answer vs non-empty gold
    assert token_f1("the", ["a"]) == 1.0             # SQuAD: both empty after normalizing
    assert token_f1("Paris", ["the"]) == 0.0         # gold empty after normalizing


# ---------------------------------------------------------------------------------- ROUGE-L

def test_rouge_l_hand_computed():
    # [cat, sat, on, mat] vs [cat, was, sitting, on, mat]: LCS = cat on mat = 3
    # P = 3/4, R = 3/5, F = 2PR/(P+R) = 0.9/1.35 = 2/3
    assert rouge_l("the cat sat on the mat", ["a cat was sitting on a mat"]) == \
        pytest.approx(2 / 3)


def test_rouge_l_is_order_sensitive_unlike_f1():
    # [mat, on, cat] vs [cat, on, mat]: LCS = 1, F = 2*1/(3+3) = 1/3; F1 (a bag) = 1
    assert rouge_l("mat on cat", ["cat on mat"]) == pytest.approx(1 / 3)
    assert token_f1("mat on cat", ["cat on mat"]) == 1.0


def test_rouge_l_edge_cases():
    assert rouge_l("x", []) is None
    assert rouge_l("", ["Paris"]) == 0.0
    assert rouge_l("Paris", ["Lyon", "Paris"]) == 1.0
    assert rouge_l("dog", ["cat"]) == 0.0


# -------------------------------------------------------------------------------- retrieval

RANKED = ["d3", "d1", "d3", "d2", "d5"]
GOLD = ["d1", "d2"]


def test_hit_at_k():
    assert hit_at_k(RANKED, GOLD, 1) == 0.0          # d3
    assert hit_at_k(RANKED, GOLD, 2) == 1.0          # d1 at rank 2
    assert hit_at_k([], GOLD, 5) == 0.0
    assert hit_at_k(RANKED, [], 5) is None


def test_recall_at_k():
    assert recall_at_k(RANKED, GOLD, 2) == 0.5       # {d1} / 2
    assert recall_at_k(RANKED, GOLD, 3) == 0.5       # the repeated d3 adds nothing
    assert recall_at_k(RANKED, GOLD, 4) == 1.0       # {d1, d2} / 2
    assert recall_at_k(RANKED, ["d1", "d1"], 4) == 1.0  # gold is a set
    assert recall_at_k(RANKED, [], 4) is None


def test_reciprocal_rank():
    assert reciprocal_rank(RANKED, GOLD) == 0.5      # first gold at rank 2
    assert reciprocal_rank(["d1"], GOLD) == 1.0
    assert reciprocal_rank(["x", "y"], GOLD) == 0.0
    assert reciprocal_rank(RANKED, []) is None


def test_ndcg_hand_computed():
    # gains at ranks 2 (d1) and 4 (d2): DCG = 1/log2(3) + 1/log2(5) = 0.63093 + 0.43068
    # IDCG (2 gold) = 1/log2(2) + 1/log2(3) = 1.63093 -> nDCG = 1.06161 / 1.63093 = 0.65093
    assert ndcg_at_k(RANKED, GOLD, 5) == pytest.approx(0.650920, abs=1e-5)
    assert ndcg_at_k(RANKED, GOLD, 5) == pytest.approx(
        (1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3)))


def test_ndcg_counts_a_duplicate_once_at_its_first_position():
    # d1 at 1 (gain 1), d1 again at 2 (no gain), d2 at 3 (1/log2(4) = 0.5): DCG 1.5
    assert ndcg_at_k(["d1", "d1", "d2"], GOLD, 3) == pytest.approx(1.5 / (1 + 1 / math.log2(3)))
    assert ndcg_at_k(["d1", "d1", "d1"], ["d1"], 3) == 1.0   # never above 1


def test_ndcg_edge_cases():
    assert ndcg_at_k(["a"], ["a", "b", "c"], 1) == 1.0       # IDCG cut at k
    assert ndcg_at_k(["a", "b"], ["a", "b"], 10) == 1.0      # perfect ranking
    assert ndcg_at_k([], ["a"], 10) == 0.0
    assert ndcg_at_k(["a"], [], 10) is None
    with pytest.raises(ValueError):
        ndcg_at_k(["a"], ["a"], 0)
    with pytest.raises(ValueError):
        hit_at_k(["a"], ["a"], 0)


# -------------------------------------------------------------------------------- citations

def test_citations_are_set_based():
    # cited {d1, d4} vs gold {d1, d2}: precision 1/2, recall 1/2
    assert citation_precision(["d1", "d1", "d4"], GOLD) == 0.5
    assert citation_recall(["d1", "d1", "d4"], GOLD) == 0.5
    assert citation_precision(["d1", "d2"], GOLD) == 1.0
    assert citation_recall(["d1"], GOLD) == 0.5


def test_citations_undefined_cases():
    assert citation_precision([], GOLD) is None      # nothing cited: no precision
    assert citation_recall([], GOLD) == 0.0          # ... but nothing of the gold is cited
    assert citation_precision(["d1"], []) is None    # no gold: nothing to judge against
    assert citation_recall(["d1"], []) is None
