"""A selective access filter still yields k results from the HNSW path (pgvector iterative
scan), deleted documents never come back, and the metadata filters narrow as documented."""

import uuid

import numpy as np
import pytest
from sqlalchemy import text

from services.common import index_registry
from services.rag import retrieval_sql as sql
from services.rag.access import can_see, scope_for
from services.rag.retrieval import RetrievalFilters, _where, retrieve
from tests.integration.rag.rows import Doc, unit_vectors

pytestmark = pytest.mark.integration

SEED = 7


def _execute(stack, statement: str, **params) -> None:
    with stack.engine.begin() as conn:
        conn.execute(text(statement), params)


def _selective_corpus(prefix: str, visible_group: str, rng: np.random.Generator) -> list[Doc]:
    """2,000 chunks (100 documents x 20); 5 documents, i.e. 5% of the chunks, visible."""
    docs = []
    for i in range(100):
        acl = [visible_group] if i % 20 == 0 else [f"{prefix}someone-else"]
        docs.append(Doc(doc_id=f"{prefix}doc-{i:03d}", texts=[f"chunk {j} of {i}"
                                                               for j in range(20)],
                        vectors=unit_vectors(rng, 20), acl=acl))
    return docs


def test_selective_filter_still_returns_k_results(stack, insert_documents):
    rng = np.random.default_rng(SEED)
    prefix = f"rag-sel-{uuid.uuid4().hex[:8]}/"
    group = f"{prefix}readers"
    docs = _selective_corpus(prefix, group, rng)
    insert_documents(docs)
    _execute(stack, "ANALYZE chunks")
    _execute(stack, "ANALYZE documents")
    scope = scope_for(f"{prefix}ana", [group], "public")
    visible = {d.doc_id for d in docs if group in d.acl}

    for _ in range(5):
        query = unit_vectors(rng, 1)[0]
        for mode in ("vector", "hybrid", "exact"):
            # The database is shared: other tests' open documents are visible too.
            got = retrieve(stack.engine, query, "chunk", scope, top_k=10, mode=mode)
            assert len(got) == 10, mode
            stored = {r[0]: (r[1], r[2]) for r in stack.query(
                "SELECT doc_id, privacy_class, acl FROM documents WHERE doc_id = ANY(:ids)",
                ids=[c.doc_id for c in got])}
            assert all(can_see(scope, *stored[c.doc_id]) for c in got), mode
            ours = retrieve(stack.engine, query, "chunk", scope, top_k=10, mode=mode,
                            filters=RetrievalFilters(doc_id_prefix=prefix))
            assert len(ours) == 10 and all(c.doc_id in visible for c in ours), mode
        hnsw = {c.chunk_id for c in retrieve(stack.engine, query, "", scope, 10, mode="vector")}
        exact = {c.chunk_id for c in retrieve(stack.engine, query, "", scope, 10, mode="exact")}
        assert len(hnsw & exact) >= 8  # recall@10 of the filtered HNSW path


def test_selective_filter_uses_the_hnsw_index_and_needs_iterative_scan(stack,
                                                                        insert_documents):
    """At this size the planner may well prefer "visible documents first, then sort" (exact and
    cheap when few rows are visible), so the HNSW plan is forced here (enable_sort off) to check
    the mechanism itself: with iterative scan the index path yields k rows; the control without
    it stops after ef_search candidates and returns fewer, which is why retrieval turns it on."""
    rng = np.random.default_rng(SEED + 1)
    prefix = f"rag-sel-plan-{uuid.uuid4().hex[:8]}/"
    group = f"{prefix}readers"
    insert_documents(_selective_corpus(prefix, group, rng))
    _execute(stack, "ANALYZE chunks")
    _execute(stack, "ANALYZE documents")
    scope = scope_for(f"{prefix}ana", [group], "public")
    where, params = _where(scope, RetrievalFilters())
    with stack.engine.connect() as conn:
        model = index_registry.model_literal(index_registry.active_model(conn))
    query_sql = text(sql.VECTOR_QUERY.format(columns=sql.CHUNK_COLUMNS, where=where,
                                             model=model))
    query = unit_vectors(rng, 1)[0]
    bind = {**params, "q": query, "limit": 10}
    force_index = text("SELECT set_config('enable_sort', 'off', true)")
    with stack.engine.begin() as conn:
        conn.execute(force_index)
        conn.execute(text(sql.SET_HNSW), {"ef_search": "40", "max_scan_tuples": "20000",
                                          "plan_cache_mode": "force_custom_plan"})
        plan = "\n".join(r[0] for r in conn.execute(text(f"EXPLAIN {query_sql.text}"), bind))
        assert "chunk_embeddings_hnsw_" in plan, plan  # the active model's partial index
        assert len(conn.execute(query_sql, bind).all()) == 10
    with stack.engine.begin() as conn:
        conn.execute(force_index)
        conn.execute(text("SELECT set_config('hnsw.iterative_scan', 'off', true), "
                          "set_config('hnsw.ef_search', '40', true)"))
        assert len(conn.execute(query_sql, bind).all()) < 10


def test_deleted_documents_are_never_returned(stack, insert_documents, embedder):
    prefix = f"rag-del-{uuid.uuid4().hex[:8]}/"
    body = "The zanzibar protocol rotates encryption keys every ninety days."
    question = "How often does the zanzibar protocol rotate encryption keys?"
    vector = embedder.encode([body])
    gone = Doc(doc_id=f"{prefix}gone", texts=[body], vectors=vector, deleted=True)
    kept = Doc(doc_id=f"{prefix}kept", texts=["Office plants are watered on Mondays."])
    insert_documents([gone, kept])
    scope = scope_for("anyone", [], "restricted")
    query = embedder.encode([question])[0]
    for mode in ("vector", "exact", "lexical", "hybrid"):
        for filters in (RetrievalFilters(), RetrievalFilters(doc_id_prefix=prefix),
                        RetrievalFilters(doc_ids=(gone.doc_id,))):
            got = retrieve(stack.engine, query, question, scope, 20, filters=filters, mode=mode)
            assert gone.doc_id not in {c.doc_id for c in got}, (mode, filters)
    # Undeleted, the same document is the best match: the filter, not the ranking, hid it.
    _execute(stack, "UPDATE documents SET deleted = false WHERE doc_id = :d", d=gone.doc_id)
    got = retrieve(stack.engine, query, question, scope, 1,
                   filters=RetrievalFilters(doc_id_prefix=prefix))
    assert got[0].doc_id == gone.doc_id


@pytest.fixture
def labelled(insert_documents):
    prefix = f"rag-meta-{uuid.uuid4().hex[:8]}/"
    docs = [
        Doc(f"{prefix}hr/a", ["leave policy"], source="wiki", license="CC-BY-4.0",
            metadata={"team": "hr", "year": 2026, "tags": ["policy", "leave"]}),
        Doc(f"{prefix}hr/b", ["leave form"], source="wiki", license="proprietary",
            metadata={"team": "hr", "year": 2025}),
        Doc(f"{prefix}eng/a", ["deploy policy"], source="git", license="Apache-2.0",
            metadata={"team": "eng", "year": 2026, "tags": ["policy"]}),
        Doc(f"{prefix}eng_x/a", ["underscore"], source="git", license="Apache-2.0",
            metadata={"team": "eng"}),
        Doc(f"{prefix}eng%/a", ["percent"], source=None, license=None, metadata={}),
    ]
    insert_documents(docs, np.random.default_rng(SEED + 2))
    return prefix


@pytest.mark.parametrize(("filters", "expected"), [
    (RetrievalFilters(), {"hr/a", "hr/b", "eng/a", "eng_x/a", "eng%/a"}),
    (RetrievalFilters(metadata={"team": "hr"}), {"hr/a", "hr/b"}),
    (RetrievalFilters(metadata={"team": "hr", "year": 2026}), {"hr/a"}),
    (RetrievalFilters(metadata={"tags": ["policy"]}), {"hr/a", "eng/a"}),
    (RetrievalFilters(metadata={"team": "nobody"}), set()),
    (RetrievalFilters(sources=("git",)), {"eng/a", "eng_x/a"}),
    (RetrievalFilters(licenses=("CC-BY-4.0", "proprietary")), {"hr/a", "hr/b"}),
    (RetrievalFilters(sources=("wiki",), licenses=("proprietary",)), {"hr/b"}),
    (RetrievalFilters(doc_ids=("hr/a", "eng/a")), {"hr/a", "eng/a"}),
    (RetrievalFilters(doc_id_prefix="eng/"), {"eng/a"}),
    (RetrievalFilters(doc_id_prefix="eng_"), {"eng_x/a"}),  # "_" is not a wildcard
    (RetrievalFilters(doc_id_prefix="eng%"), {"eng%/a"}),  # nor is "%"
])
def test_metadata_filters(stack, labelled, filters, expected):
    prefix = labelled
    # Filters are relative to this test's documents: prefix the ids it names.
    if filters.doc_ids:
        filters = RetrievalFilters(doc_ids=tuple(prefix + d for d in filters.doc_ids))
    narrowed = RetrievalFilters(
        doc_ids=filters.doc_ids, sources=filters.sources, licenses=filters.licenses,
        metadata=filters.metadata, doc_id_prefix=prefix + (filters.doc_id_prefix or ""))
    scope = scope_for("anyone", [], "public")
    query = unit_vectors(np.random.default_rng(1), 1)[0]
    for mode in ("vector", "exact", "hybrid"):
        got = retrieve(stack.engine, query, "policy leave", scope, 50, filters=narrowed, mode=mode)
        assert {c.doc_id.removeprefix(prefix) for c in got} == expected, mode
    lexical = retrieve(stack.engine, query, "policy leave", scope, 50, filters=narrowed,
                       mode="lexical")
    assert {c.doc_id.removeprefix(prefix) for c in lexical} == expected & {"hr/a", "hr/b",
                                                                          "eng/a"}


def test_access_still_applies_under_filters(stack, insert_documents):
    prefix = f"rag-meta-acl-{uuid.uuid4().hex[:8]}/"
    docs = [Doc(f"{prefix}open", ["text"], metadata={"team": "x"}),
            Doc(f"{prefix}closed", ["text"], metadata={"team": "x"}, acl=[f"{prefix}g"]),
            Doc(f"{prefix}secret", ["text"], metadata={"team": "x"}, privacy_class="restricted")]
    insert_documents(docs)
    scope = scope_for("anyone", [], "confidential")
    ids = (d.doc_id for d in docs)
    for filters in (RetrievalFilters(metadata={"team": "x"}), RetrievalFilters(doc_ids=tuple(ids)),
                    RetrievalFilters(doc_id_prefix=prefix)):
        got = retrieve(stack.engine, unit_vectors(np.random.default_rng(3), 1)[0], "text",
                       scope, 10, filters=filters)
        assert [c.doc_id for c in got] == [f"{prefix}open"]
        assert all(can_see(scope, c.privacy_class, []) for c in got)
