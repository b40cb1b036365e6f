"""build_context: dedupe by content hash, merge consecutive chunks, rank order, token budget."""

import pytest

from services.rag.context import TRUNCATION_MARK, approx_tokens, build_context
from services.rag.retrieval import RetrievedChunk

pytestmark = pytest.mark.unit


def chunk(doc: str, ordinal: int, text: str, score: float = 1.0, content_hash: str | None = None,
          ) -> RetrievedChunk:
    return RetrievedChunk(
        chunk_id=f"{doc}#{ordinal}", doc_id=doc, ordinal=ordinal,
        content_hash=content_hash or f"h:{doc}:{ordinal}", text=text, title=f"Title {doc}",
        uri=f"https://docs/{doc}", source="tests", license="CC-BY-4.0", privacy_class="public",
        heading_path=(), score=score, vector_rank=None, lexical_rank=None)


def words(n: int, tag: str = "w") -> str:
    return " ".join(f"{tag}{i}" for i in range(n))


def count_words(text: str) -> int:
    return len(text.split())


def test_items_are_numbered_in_rank_order():
    items = build_context([chunk("a", 0, "alpha", 0.9), chunk("b", 3, "beta", 0.8),
                           chunk("c", 1, "gamma", 0.7)], token_budget=100)
    assert [(i.n, i.doc_id, i.text, i.score) for i in items] == [
        (1, "a", "alpha", 0.9), (2, "b", "beta", 0.8), (3, "c", "gamma", 0.7)]
    assert items[0].title == "Title a" and items[0].uri == "https://docs/a"
    assert items[0].chunk_ids == ("a#0",)


def test_exact_duplicates_are_dropped_keeping_the_best_ranked():
    items = build_context([chunk("a", 0, "same text", 0.9, content_hash="h1"),
                           chunk("b", 5, "other", 0.8),
                           chunk("c", 2, "same text", 0.7, content_hash="h1")], 100)
    assert [i.doc_id for i in items] == ["a", "b"]


def test_consecutive_chunks_of_a_document_merge_in_document_order():
    items = build_context([chunk("a", 2, "two", 0.9), chunk("b", 0, "other", 0.8),
                           chunk("a", 1, "one", 0.7), chunk("a", 3, "three", 0.6)], 100)
    assert [i.doc_id for i in items] == ["a", "b"]
    assert items[0].chunk_ids == ("a#1", "a#2", "a#3")
    assert items[0].text == "one\n\ntwo\n\nthree"
    assert items[0].score == 0.9
    assert [i.n for i in items] == [1, 2]


def test_a_gap_in_ordinals_keeps_items_apart():
    items = build_context([chunk("a", 1, "one"), chunk("a", 3, "three"), chunk("a", 4, "four")],
                          100)
    assert [i.chunk_ids for i in items] == [("a#1",), ("a#3", "a#4")]


def test_a_merged_item_takes_the_rank_of_its_best_chunk():
    items = build_context([chunk("b", 0, "b"), chunk("a", 5, "a5"), chunk("c", 0, "c"),
                           chunk("a", 4, "a4")], 100)
    assert [i.doc_id for i in items] == ["b", "a", "c"]
    assert items[1].chunk_ids == ("a#4", "a#5")


def test_budget_stops_before_the_item_that_would_exceed_it():
    ranked = [chunk("a", 0, words(40)), chunk("b", 0, words(40)), chunk("c", 0, words(5))]
    items = build_context(ranked, token_budget=85, count_tokens=count_words)
    # a + b + c = 85: everything fits exactly.
    assert [i.doc_id for i in items] == ["a", "b", "c"]
    items = build_context(ranked, token_budget=79, count_tokens=count_words)
    # b does not fit: stop there, do not slip c in after it.
    assert [i.doc_id for i in items] == ["a"]
    assert sum(count_words(i.text) for i in items) <= 79


def test_default_counter_is_four_thirds_tokens_per_word():
    assert approx_tokens(words(30)) == 40
    assert approx_tokens("") == 0
    items = build_context([chunk("a", 0, words(30)), chunk("b", 0, words(30))], token_budget=60)
    assert [i.doc_id for i in items] == ["a"]


def test_a_first_item_over_budget_is_truncated_not_dropped():
    items = build_context([chunk("a", 0, words(100)), chunk("b", 0, "small")],
                          token_budget=20, count_tokens=count_words)
    assert len(items) == 1
    assert items[0].n == 1 and items[0].doc_id == "a"
    assert items[0].text.endswith(TRUNCATION_MARK)
    assert count_words(items[0].text) <= 20
    assert items[0].text.startswith("w0 w1 w2")


def test_truncating_a_merged_item_cites_only_the_chunks_it_reaches():
    ranked = [chunk("a", 0, words(10, "x")), chunk("a", 1, words(10, "y")),
              chunk("a", 2, words(10, "z"))]
    items = build_context(ranked, token_budget=15, count_tokens=count_words)
    assert items[0].chunk_ids == ("a#0", "a#1")
    assert items[0].text.startswith(words(10, "x") + "\n\ny0")
    assert "z0" not in items[0].text


def test_truncation_under_an_absurd_budget_keeps_one_word():
    items = build_context([chunk("a", 0, words(10))], token_budget=0, count_tokens=count_words)
    assert items[0].text == "w0" + TRUNCATION_MARK


def test_no_chunks_no_items():
    assert build_context([], 100) == []
