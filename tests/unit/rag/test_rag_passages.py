"""Passages: what top_k counts on the query path (consecutive chunks of a document are one)."""

import pytest

from services.rag import passages
from services.rag.retrieval import RetrievedChunk

pytestmark = pytest.mark.unit


def chunk(doc: str, ordinal: int, content_hash: str | None = None) -> RetrievedChunk:
    return RetrievedChunk(
        chunk_id=f"{doc}#{ordinal}", doc_id=doc, ordinal=ordinal,
        content_hash=content_hash or f"h:{doc}:{ordinal}", text=f"{doc} {ordinal}", title=None,
        uri=None, source="tests", license=None, privacy_class="public", heading_path=(),
        score=1.0, vector_rank=None, lexical_rank=None)


def ids(chunks: list[RetrievedChunk]) -> list[str]:
    return [c.chunk_id for c in chunks]


def test_a_split_paragraph_takes_one_slot():
    ranked = [chunk("a", 0), chunk("a", 1), chunk("b", 4), chunk("a", 2), chunk("c", 0),
              chunk("d", 0)]
    assert ids(passages.prefix(ranked, 2)) == ["a#0", "a#1", "b#4", "a#2"]
    assert passages.doc_ids(ranked) == ["a", "b", "c", "d"]


def test_chunks_of_a_document_that_are_apart_are_two_passages():
    ranked = [chunk("a", 0), chunk("a", 5), chunk("b", 0)]
    assert ids(passages.prefix(ranked, 2)) == ["a#0", "a#5"]
    assert passages.doc_ids(ranked) == ["a", "a", "b"]


def test_a_chunk_between_two_passages_joins_them():
    ranked = [chunk("a", 0), chunk("a", 2), chunk("a", 1), chunk("b", 0), chunk("c", 0)]
    # a#0 and a#2 are two passages until a#1 joins them: b still fits as the second.
    assert ids(passages.prefix(ranked, 2)) == ["a#0", "a#2", "a#1", "b#0"]
    assert passages.doc_ids(ranked) == ["a", "b", "c"]


def test_a_repeated_text_opens_no_passage():
    ranked = [chunk("a", 0, "same"), chunk("b", 7, "same"), chunk("c", 0), chunk("d", 0)]
    assert ids(passages.prefix(ranked, 2)) == ["a#0", "b#7", "c#0"]
    assert passages.doc_ids(ranked) == ["a", "c", "d"]


def test_a_short_list_comes_back_whole_and_zero_passages_is_empty():
    ranked = [chunk("a", 0), chunk("a", 1)]
    assert ids(passages.prefix(ranked, 5)) == ["a#0", "a#1"]
    assert passages.prefix(ranked, 0) == []


@pytest.mark.parametrize(("configured", "retrieval_only", "unit"), [
    ("auto", True, "passage"), ("auto", False, "chunk"),
    ("passage", False, "passage"), ("chunk", True, "chunk")])
def test_auto_counts_passages_for_a_result_list_and_chunks_for_an_answer(
        configured, retrieval_only, unit):
    from services.rag.pipeline import _unit

    assert _unit(configured, retrieval_only) == unit
