"""Hybrid retrieval with real MiniLM embeddings: an exact rare keyword that vector search ranks
low is found through the lexical list, a paraphrase without shared words through the vector
list; plus lexical edge cases and the reranking hook."""

import uuid
from dataclasses import replace

import numpy as np
import pytest

from services.rag.access import scope_for
from services.rag.fusion import SIGNALS, FusionWeights
from services.rag.retrieval import (
    DEFAULT_WEIGHTS,
    RetrievalFilters,
    fuse,
    hybrid_pool,
    retrieve,
)
from tests.integration.rag.rows import Doc, unit_vectors, write_documents

pytestmark = pytest.mark.integration

CORPUS = {
    "keyword": "Facilities note: during the move of the cafeteria to the east wing, the old "
               "espresso machine (asset tag QX7731) was donated to the local library together "
               "with two sofas.",
    "refunds": "Refund policy: customers may return unused items within 30 days of delivery "
               "and are reimbursed to the original card.",
    "inventory": "Equipment inventory: every laptop and monitor carries an asset tag that IT "
                 "scans during the yearly audit.",
    "assets": "Asset management: tags are printed on durable labels and recorded in the "
              "inventory database with the owner and location.",
    "lifecycle": "Hardware lifecycle: devices older than four years are retired, wiped and "
                 "recycled through a certified partner.",
    "servicedesk": "The IT service desk tracks every device with a unique identifier so that "
                   "lost equipment can be traced.",
    "shipping": "Shipping: orders leave the warehouse within two business days and tracking "
                "numbers are sent by email.",
    "badges": "Security policy: badges must be worn visibly and visitors are escorted at all "
              "times.",
    "travel": "Travel policy: economy class is booked for flights under six hours; hotels must "
              "be pre-approved.",
    "onboarding": "Onboarding: new hires receive a laptop, a badge and a mentor during their "
                  "first week.",
    "expenses": "Expense reports are submitted monthly with receipts attached and approved by "
                "the manager.",
    "payroll": "Payroll runs on the last business day of the month; payslips are available in "
               "the HR portal.",
    "kitchen": "The office kitchen is cleaned every evening; please label food stored in the "
               "fridge.",
    "parking": "Parking: employees may park in levels two and three of the garage with a valid "
               "permit.",
}


@pytest.fixture(scope="module")
def corpus(stack, embedder):
    prefix = f"rag-hybrid-{uuid.uuid4().hex[:8]}/"
    names = list(CORPUS)
    vectors = embedder.encode([CORPUS[n] for n in names])
    write_documents(stack.engine, [Doc(prefix + n, [CORPUS[n]], vectors=vectors[i:i + 1])
                                   for i, n in enumerate(names)])
    return prefix


def _ranks(stack, embedder, prefix: str, question: str, target: str) -> dict[str, int | None]:
    scope = scope_for("reader", [], "public")
    query = embedder.encode([question])[0]
    ranks = {}
    for mode in ("vector", "lexical", "hybrid"):
        got = retrieve(stack.engine, query, question, scope, top_k=len(CORPUS),
                       filters=RetrievalFilters(doc_id_prefix=prefix), mode=mode)
        ids = [c.doc_id.removeprefix(prefix) for c in got]
        ranks[mode] = ids.index(target) + 1 if target in ids else None
    return ranks


def test_rare_keyword_ranked_low_by_vectors_is_found_by_hybrid(stack, embedder, corpus):
    ranks = _ranks(stack, embedder, corpus, "Which device has asset tag QX7731?", "keyword")
    assert ranks["lexical"] == 1
    assert ranks["vector"] is None or ranks["vector"] > 3, ranks  # semantically generic
    assert ranks["hybrid"] is not None and ranks["hybrid"] <= 3, ranks
    assert ranks["vector"] is None or ranks["hybrid"] < ranks["vector"]


def test_paraphrase_missed_by_lexical_is_found_by_hybrid(stack, embedder, corpus):
    ranks = _ranks(stack, embedder, corpus,
                   "How do I get my money back for something I bought?", "refunds")
    assert ranks["lexical"] is None, ranks  # no word in common with the document
    assert ranks["vector"] == 1
    assert ranks["hybrid"] == 1


def test_hybrid_reports_both_ranks(stack, embedder, corpus):
    question = "Which device has asset tag QX7731?"
    got = retrieve(stack.engine, embedder.encode([question])[0], question,
                   scope_for("reader", [], "public"), 5,
                   filters=RetrievalFilters(doc_id_prefix=corpus))
    keyword = next(c for c in got if c.doc_id == corpus + "keyword")
    assert keyword.lexical_rank == 1 and keyword.vector_rank is not None
    assert [c.score for c in got] == sorted((c.score for c in got), reverse=True)


@pytest.mark.parametrize("question", [
    "", "   ", "the and of to", "O'Reilly's \\path\\ 'quoted' \"double\" & | ! <-> :* ()",
    "QX7731 & ('x' | !y)",
])
def test_lexical_survives_odd_questions(stack, corpus, question):
    got = retrieve(stack.engine, unit_vectors(np.random.default_rng(0), 1)[0], question,
                   scope_for("reader", [], "public"), 5,
                   filters=RetrievalFilters(doc_id_prefix=corpus), mode="lexical")
    if "QX7731" in question:
        assert got[0].doc_id == corpus + "keyword"
    elif not question.strip() or question == "the and of to":
        assert got == []


class ReverseReranker:
    def __init__(self) -> None:
        self.seen: list[str] = []

    def rerank(self, question, chunks):
        self.seen = [c.chunk_id for c in chunks]
        return [replace(c, score=float(i)) for i, c in enumerate(reversed(chunks))]


def test_reranker_reorders_the_candidate_pool(stack, embedder, corpus):
    question = "Which device has asset tag QX7731?"
    reranker = ReverseReranker()
    got = retrieve(stack.engine, embedder.encode([question])[0], question,
                   scope_for("reader", [], "public"), 3,
                   filters=RetrievalFilters(doc_id_prefix=corpus), mode="vector",
                   candidates=10, reranker=reranker)
    assert len(reranker.seen) == 10  # the pool, not just top_k
    assert [c.chunk_id for c in got] == list(reversed(reranker.seen))[:3]


def test_hybrid_vector_list_can_use_the_hnsw_index(stack, embedder, corpus):
    """The vector list inside the one hybrid statement is still an index scan (forced here with
    enable_sort off, as the corpus is small enough for the planner to prefer a sort)."""
    from sqlalchemy import text

    from services.common import index_registry
    from services.rag import retrieval_sql as sql
    from services.rag.retrieval import DF_CAP, _where

    where, params = _where(scope_for("reader", [], "public"), RetrievalFilters())
    with stack.engine.connect() as conn:
        model = index_registry.model_literal(index_registry.active_model(conn))
    query = sql.HYBRID_QUERY.format(columns=sql.CHUNK_COLUMNS, where=where,
                                    access=sql.ACCESS_WHERE, model=model)
    bind = {**params, "q": embedder.encode(["asset tag"])[0], "question": "asset tag",
            "limit": 10, "df_cap": DF_CAP, "k1": 0.9, "b": 0.4}
    with stack.engine.begin() as conn:
        conn.execute(text("SELECT set_config('enable_sort', 'off', true)"))
        conn.execute(text(sql.SET_HNSW), {"ef_search": "40", "max_scan_tuples": "20000",
                                          "plan_cache_mode": "auto"})
        plan = "\n".join(r[0] for r in conn.execute(text(f"EXPLAIN {query}"), bind))
    assert "chunk_embeddings_hnsw_" in plan, plan  # the active model's partial HNSW index


def test_hybrid_ranks_by_the_fused_score_and_breaks_ties_by_chunk_id(stack, embedder, corpus):
    question = "Which device has asset tag QX7731?"
    got = retrieve(stack.engine, embedder.encode([question])[0], question,
                   scope_for("reader", [], "public"), len(CORPUS),
                   filters=RetrievalFilters(doc_id_prefix=corpus))
    keys = [(-c.score, c.chunk_id) for c in got]
    assert keys == sorted(keys)
    assert len(got) == len(CORPUS)  # the pool holds every chunk either list found


def test_the_pool_with_its_signals_fuses_to_what_retrieve_returns(stack, embedder, corpus):
    """The tuning script scores stored pools (``benchmarks/fusion_grid.py``): that is only
    sound if fusing a pool gives exactly what retrieval serves, under the same access scope."""
    question = "Which device has asset tag QX7731?"
    vector = embedder.encode([question])[0]
    scope, filters = scope_for("reader", [], "public"), RetrievalFilters(doc_id_prefix=corpus)
    members, signals = hybrid_pool(stack.engine, vector, question, scope, filters=filters)
    assert set(signals) == set(SIGNALS)
    assert all(len(values) == len(members) for values in signals.values())
    keyword = members[[m.doc_id for m in members].index(corpus + "keyword")]
    at = members.index(keyword)
    assert signals["coverage"][at] >= signals["proximity"][at] >= signals["phrase"][at] > 0
    served = retrieve(stack.engine, vector, question, scope, len(CORPUS), filters=filters)
    fused = fuse(members, signals, DEFAULT_WEIGHTS)
    assert [c.chunk_id for c in fused] == [c.chunk_id for c in served]
    # BM25's corpus statistics are read by each of the two statements, and the session's
    # workers may still be indexing another test's documents between them: a few parts per
    # million, never the order
    assert [c.score for c in fused] == pytest.approx([c.score for c in served], rel=1e-4)
    lexical_only = fuse(members, signals, FusionWeights(vector=0, lexical=1, phrase=0,
                                                        proximity=0, coverage=0))
    assert lexical_only[0].doc_id == corpus + "keyword"
