"""Pure parts of retrieval: filter composition, reranking order (fusion: test_rag_fusion_scores)."""

import json
from dataclasses import replace

import pytest

from services.rag import retrieval_sql as sql
from services.rag.access import scope_for
from services.rag.rerank import CrossEncoderReranker, Reranker, reranker_from_path
from services.rag.retrieval import RetrievalFilters, RetrievedChunk, _where

pytestmark = pytest.mark.unit


def chunk(cid: str, vector_rank: int | None = None, lexical_rank: int | None = None,
          text: str = "t") -> RetrievedChunk:
    return RetrievedChunk(
        chunk_id=cid, doc_id=f"doc-{cid}", ordinal=0, content_hash=f"h{cid}", text=text,
        title=None, uri=None, source=None, license=None, privacy_class="public",
        heading_path=(), score=0.0, vector_rank=vector_rank, lexical_rank=lexical_rank)


def test_access_filter_is_always_in_the_where_clause():
    where, params = _where(scope_for("ana", ["team:a"], "internal"), RetrievalFilters())
    assert where == f"({sql.ACCESS_WHERE})"
    assert params == {"max_rank": 1, "principals": ["ana", "team:a"]}


def test_set_filters_are_anded_with_their_parameters():
    filters = RetrievalFilters(doc_ids=("a", "b"), doc_id_prefix="hr/50%_off\\", sources=("wiki",),
                               licenses=("CC-BY-4.0",), metadata={"team": "x", "year": 2026})
    where, params = _where(scope_for("ana", [], "public"), filters)
    for clause in (sql.ACCESS_WHERE, sql.FILTER_DOC_IDS, sql.FILTER_DOC_ID_PREFIX,
                   sql.FILTER_SOURCES, sql.FILTER_LICENSES, sql.FILTER_METADATA):
        assert f"({clause})" in where
    assert where.count(") AND (") == 5
    assert params["doc_id_pattern"] == "hr/50\\%\\_off\\\\%"
    assert json.loads(params["metadata"]) == {"team": "x", "year": 2026}
    assert params["sources"] == ["wiki"] and params["licenses"] == ["CC-BY-4.0"]


class StubCrossEncoder(CrossEncoderReranker):
    """Scores by text length, so the order is known without a model."""

    def _predict(self, pairs):
        return [float(len(text)) for _question, text in pairs]


def test_cross_encoder_reranker_sorts_by_its_scores(tmp_path):
    reranker = StubCrossEncoder(tmp_path)
    assert isinstance(reranker, Reranker)
    chunks = [chunk("a", text="xx"), chunk("b", text="xxxx"), chunk("c", text="xxxx")]
    out = reranker.rerank("q", chunks)
    assert [(c.chunk_id, c.score) for c in out] == [("b", 4.0), ("c", 4.0), ("a", 2.0)]
    assert [replace(c, score=0.0) for c in sorted(out, key=lambda c: c.chunk_id)] == chunks
    assert reranker.rerank("q", []) == []


def test_no_reranker_without_a_configured_path(tmp_path):
    assert reranker_from_path(None) is None
    assert reranker_from_path("") is None
    assert isinstance(reranker_from_path(tmp_path), CrossEncoderReranker)
    with pytest.raises(FileNotFoundError, match="no reranker model ships"):
        reranker_from_path(tmp_path / "missing")
