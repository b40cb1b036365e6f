from dataclasses import dataclass

import pytest

from services.rag import cache
from services.rag.handlers import citations_for, cited_numbers, should_abstain, usage_with_cost

pytestmark = pytest.mark.unit


@dataclass
class Item:
    n: int
    chunk_ids: tuple
    doc_id: str
    uri: str | None = None
    title: str | None = None
    score: float = 0.5
    text: str = "t"


ITEMS = [Item(1, ("c1",), "d1"), Item(2, ("c2", "c3"), "d2"), Item(3, ("c4",), "d3")]


def test_cited_numbers_keep_first_seen_order_and_drop_out_of_range():
    assert cited_numbers("As [2] says, and [1], again [2], not [7] or [0].", 3) == [2, 1]


def test_citations_follow_markers():
    cites = citations_for("Yes [3].", ITEMS, abstained=False)
    assert [(c.n, c.doc_id, c.chunk_id, c.chunk_ids) for c in cites] == [(3, "d3", "c4", ["c4"])]


def test_without_markers_every_context_item_is_cited():
    assert [c.doc_id for c in citations_for("Yes.", ITEMS, abstained=False)] == ["d1", "d2", "d3"]
    assert citations_for("Yes.", ITEMS, abstained=False)[1].chunk_ids == ["c2", "c3"]


def test_an_abstention_cites_nothing():
    assert citations_for("I don't know [1].", ITEMS, abstained=True) == []


@pytest.mark.parametrize("best, threshold, expected", [
    (None, 0.3, True), (0.29, 0.3, True), (0.3, 0.3, False), (0.8, 0.3, False)])
def test_should_abstain(best, threshold, expected):
    assert should_abstain(best, threshold) is expected


def test_cost_from_the_price_table():
    usage = usage_with_cost(1000, 500, price_prompt_per_1k=0.5, price_completion_per_1k=1.5)
    assert (usage.prompt_tokens, usage.completion_tokens, usage.cost_usd) == (1000, 500, 1.25)


def test_cache_keys_normalize_case_and_spacing_but_not_words():
    context = cache.context_key({"scope": "a", "adapter": None})
    same = cache.cache_key(context, "when is payday?")
    assert cache.cache_key(context, "When  is PAYDAY?") == same
    assert cache.cache_key(context, "when is payday?") != cache.cache_key(context, "when is it?")
    other = cache.context_key({"scope": "b", "adapter": None})
    assert cache.cache_key(other, "when is payday?") != cache.cache_key(context, "when is payday?")
