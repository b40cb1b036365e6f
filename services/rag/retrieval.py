"""Hybrid retrieval over pgvector (HNSW, cosine) and Postgres full-text search, access-filtered.

Why it is shaped this way:

* **Access control lives in SQL.** Each candidate query joins ``documents`` and filters on
  ``privacy_rank`` and ``acl`` (see ``services.rag.access`` for the rules), so a chunk outside
  the scope is never read into Python; nothing is filtered after the fact.
* **Filtered vector search stays complete.** A plain HNSW scan looks at ``ef_search``
  neighbours and then filters, so a selective filter (a principal who sees 5% of the corpus)
  would return fewer than k rows. pgvector 0.8's iterative scan (``relaxed_order``) keeps
  scanning until LIMIT rows pass the filter (bounded by ``hnsw.max_scan_tuples``); rows are
  re-sorted by exact distance afterwards because relaxed order may swap near neighbours.
* **Hybrid = one pool, scored on every signal.** The vector list and the lexical list
  (``candidates`` each) are merged into one pool inside one SQL statement; every member gets its
  cosine, its BM25 and the positions of the question's terms, and ``services.rag.fusion`` orders
  the pool by a weighted sum of the standardized signals (cosine, BM25, and how much of the
  question's idf the chunk holds within a phrase, a sentence and anywhere). Ties are broken by
  ``chunk_id`` so equal inputs always give the same order.
* **Vectors are versioned by model.** They are read from ``chunk_embeddings`` for one model
  (the caller's, else the index's active model), through that model's partial HNSW index, so a
  shadow re-index for another model never changes what a query sees until the switch
  (``services.common.index_registry``).
* ``mode="exact"`` is the same vector query with index scans disabled (brute force): the
  baseline that recall of the HNSW path is measured against.
* **Results can count as passages.** With ``unit="passage"`` a paragraph the chunker split
  takes one of the ``top_k`` places, as it takes one citation (``services.rag.passages``).
* **Plan caching is chosen per mode** (``PLAN_CACHE_MODES``, measured in
  ``benchmarks/retrieval_plans.py``): the hybrid and lexical statements may run from Postgres'
  cached generic plan, the vector statements are planned with each question's values.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from services.common import index_registry
from services.rag import passages
from services.rag import retrieval_sql as sql
from services.rag.access import AccessScope
from services.rag.fusion import FusionWeights, fused_scores, term_signals

if TYPE_CHECKING:
    from services.rag.rerank import Reranker

Mode = Literal["hybrid", "vector", "lexical", "exact"]
MODES: tuple[str, ...] = ("hybrid", "vector", "lexical", "exact")
Unit = Literal["chunk", "passage"]
UNITS: tuple[str, ...] = ("chunk", "passage")
EF_SEARCH_MIN = 40
EF_SEARCH_MAX = 1000  # pgvector's upper bound for hnsw.ef_search
MAX_SCAN_TUPLES = 20_000  # pgvector's default; caps the work of one iterative scan
DF_CAP = 1000  # lexical: exact document-frequency counting stops here (see retrieval_sql)
DEFAULT_WEIGHTS = FusionWeights()
# ``plan_cache_mode`` per mode, set for the retrieval transaction (see ``retrieval_sql``).
PLAN_CACHE_MODES: dict[str, str] = {"hybrid": "auto", "lexical": "auto",
                                    "vector": "force_custom_plan", "exact": "force_custom_plan"}


@dataclass(frozen=True)
class RetrievalFilters:
    """Optional narrowing on top of access control; every set filter must match (AND)."""

    doc_ids: tuple[str, ...] = ()
    doc_id_prefix: str | None = None
    sources: tuple[str, ...] = ()
    licenses: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)  # jsonb containment (@>)
    # Guardrails: drop chunks whose ingest-time injection score reaches this (None: keep all).
    max_injection_score: float | None = None


@dataclass(frozen=True)
class RetrievedChunk:
    """One chunk with the document fields a citation or an audit record needs."""

    chunk_id: str
    doc_id: str
    ordinal: int
    content_hash: str
    text: str
    title: str | None
    uri: str | None
    source: str | None
    license: str | None
    privacy_class: str
    heading_path: tuple[str, ...]
    score: float
    vector_rank: int | None  # 1-based rank in the vector list, None when absent from it
    lexical_rank: int | None  # 1-based rank in the lexical list, None when absent from it
    injection_score: float | None = None  # ingest-time injection scan; None: not scanned
    page_start: int | None = None  # pages of a paged source (PDF); None: not paged
    page_end: int | None = None


def retrieve(
    engine: Engine,
    query_vector: np.ndarray,
    question: str,
    scope: AccessScope,
    top_k: int,
    filters: RetrievalFilters = RetrievalFilters(),  # frozen: a shared default is safe
    mode: Mode = "hybrid",
    candidates: int = 40,
    reranker: Reranker | None = None,
    weights: FusionWeights = DEFAULT_WEIGHTS,
    model_id: str | None = None,
    unit: Unit = "chunk",
) -> list[RetrievedChunk]:
    """The best chunks the scope may see, best first: ``top_k`` of them, or with
    ``unit="passage"`` as many as make ``top_k`` passages (``services.rag.passages``: the
    citations a reply lists; the query path counts this way).

    ``candidates`` is the length of each list before fusion (the pool a ``reranker``
    reorders is their union). ``weights`` sets the hybrid fusion and BM25's parameters (the
    lexical mode uses the same BM25). ``model_id`` names the embedding model ``query_vector``
    comes from (its vectors are searched); None: the index's active model, read in the same
    transaction.
    """
    if mode not in MODES:
        raise ValueError(f"unknown retrieval mode {mode!r}; expected one of {', '.join(MODES)}")
    if unit not in UNITS:
        raise ValueError(f"unknown retrieval unit {unit!r}; expected one of {', '.join(UNITS)}")
    if top_k <= 0:
        return []
    depth = top_k * passages.DEPTH if unit == "passage" else top_k
    pool = max(depth, candidates) if (mode == "hybrid" or reranker is not None) else depth
    where, params = _where(scope, filters)
    with engine.begin() as conn:
        model = "" if mode == "lexical" else _model(conn, model_id)
        if mode == "lexical":
            chunks = _lexical(conn, question, where, params, pool, weights)
        elif mode in ("vector", "exact"):
            chunks = _vector(conn, query_vector, model, where, params, pool,
                             exact=mode == "exact")
        elif question.strip():
            chunks = _hybrid(conn, query_vector, model, question, where, params, pool, weights)
        else:  # no words to match: the vector list is the whole pool
            chunks = _vector(conn, query_vector, model, where, params, pool, exact=False)
    if reranker is not None:
        chunks = reranker.rerank(question, chunks)
    if unit == "passage":
        return passages.prefix(chunks[:depth], top_k)
    return chunks[:top_k]


def _model(conn: Connection, model_id: str | None) -> str:
    """The model's id as a SQL literal; the active model when none is named."""
    model_id = model_id or index_registry.active_model(conn)
    if model_id is None:
        raise RuntimeError("the index has no active embedding model (run the migrations)")
    return index_registry.model_literal(model_id)


def _where(scope: AccessScope, filters: RetrievalFilters) -> tuple[str, dict[str, Any]]:
    """Access filter plus the set filters, with their bind parameters."""
    clauses = [sql.ACCESS_WHERE]
    params: dict[str, Any] = {"max_rank": scope.max_rank, "principals": list(scope.principals)}
    if filters.doc_ids:
        clauses.append(sql.FILTER_DOC_IDS)
        params["doc_ids"] = list(filters.doc_ids)
    if filters.doc_id_prefix:
        clauses.append(sql.FILTER_DOC_ID_PREFIX)
        params["doc_id_pattern"] = _like_prefix(filters.doc_id_prefix)
    if filters.sources:
        clauses.append(sql.FILTER_SOURCES)
        params["sources"] = list(filters.sources)
    if filters.licenses:
        clauses.append(sql.FILTER_LICENSES)
        params["licenses"] = list(filters.licenses)
    if filters.metadata:
        clauses.append(sql.FILTER_METADATA)
        params["metadata"] = json.dumps(filters.metadata, sort_keys=True)
    if filters.max_injection_score is not None:
        clauses.append(sql.FILTER_INJECTION)
        params["max_injection_score"] = float(filters.max_injection_score)
    return " AND ".join(f"({c})" for c in clauses), params


def _like_prefix(prefix: str) -> str:
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


def _vector(conn: Connection, query_vector: np.ndarray, model: str, where: str,
            params: dict[str, Any], limit: int, exact: bool) -> list[RetrievedChunk]:
    vector = np.asarray(query_vector, dtype=np.float32).reshape(-1)
    if exact:
        conn.execute(text(sql.SET_EXACT), {"plan_cache_mode": PLAN_CACHE_MODES["exact"]})
    else:
        _set_hnsw(conn, limit, PLAN_CACHE_MODES["vector"])
    rows = conn.execute(
        text(sql.VECTOR_QUERY.format(columns=sql.CHUNK_COLUMNS, where=where, model=model)),
        {**params, "q": vector, "limit": limit},
    ).mappings().all()
    return [_chunk(row, score=1.0 - float(row["distance"]), vector_rank=rank)
            for rank, row in enumerate(rows, start=1)]


def _lexical(conn: Connection, question: str, where: str, params: dict[str, Any],
             limit: int, weights: FusionWeights) -> list[RetrievedChunk]:
    if not question.strip():
        return []
    conn.execute(text(sql.SET_PLAN_CACHE), {"plan_cache_mode": PLAN_CACHE_MODES["lexical"]})
    rows = conn.execute(
        text(sql.LEXICAL_QUERY.format(columns=sql.CHUNK_COLUMNS, where=where,
                                      access=sql.ACCESS_WHERE)),
        {**params, "question": question, "limit": limit, "df_cap": DF_CAP,
         "k1": weights.k1, "b": weights.b},
    ).mappings().all()
    return [_chunk(row, score=float(row["score"] or 0.0), lexical_rank=rank)
            for rank, row in enumerate(rows, start=1)]


def _hybrid(conn: Connection, query_vector: np.ndarray, model: str, question: str, where: str,
            params: dict[str, Any], limit: int, weights: FusionWeights) -> list[RetrievedChunk]:
    """The fused pool, best first; each chunk is built once, with its score."""
    rows, signals = _pool_rows(conn, query_vector, model, question, where, params, limit, weights)
    scores = fused_scores(signals, weights)
    return _best_first([_chunk(row, score=score, vector_rank=row["vrank"],
                               lexical_rank=row["lrank"])
                        for row, score in zip(rows, scores, strict=True)])


def fuse(members: list[RetrievedChunk], signals: dict[str, list[float]],
         weights: FusionWeights) -> list[RetrievedChunk]:
    """Stored pool members (``hybrid_pool``) scored by ``weights``, best first: the order
    ``retrieve`` would serve with those weights."""
    scores = fused_scores(signals, weights)
    return _best_first([replace(member, score=score)
                        for member, score in zip(members, scores, strict=True)])


def _best_first(chunks: list[RetrievedChunk]) -> list[RetrievedChunk]:
    return sorted(chunks, key=lambda c: (-c.score, c.chunk_id))  # ties: chunk id


def hybrid_pool(engine: Engine, query_vector: np.ndarray, question: str, scope: AccessScope,
                candidates: int = 40, filters: RetrievalFilters = RetrievalFilters(),
                weights: FusionWeights = DEFAULT_WEIGHTS, model_id: str | None = None,
                ) -> tuple[list[RetrievedChunk], dict[str, list[float]]]:
    """The hybrid pool before ordering, with every member's fusion signals (``fusion.SIGNALS``).
    Why public: fusion weights are tuned by scoring stored pools under many settings
    (``benchmarks/fusion_grid.py``), one SQL query per question instead of one per setting.
    ``weights`` matters here only for BM25's k1/b and the term windows."""
    where, params = _where(scope, filters)
    with engine.begin() as conn:
        rows, signals = _pool_rows(conn, query_vector, _model(conn, model_id), question, where,
                                   params, candidates, weights)
    return [_chunk(row, score=0.0, vector_rank=row["vrank"], lexical_rank=row["lrank"])
            for row in rows], signals


def _pool_rows(conn: Connection, query_vector: np.ndarray, model: str, question: str,
               where: str, params: dict[str, Any], limit: int, weights: FusionWeights,
               ) -> tuple[list[Any], dict[str, list[float]]]:
    """The pool's rows and their fusion signals, one list per name of ``fusion.SIGNALS``."""
    vector = np.asarray(query_vector, dtype=np.float32).reshape(-1)
    _set_hnsw(conn, limit, PLAN_CACHE_MODES["hybrid"])
    rows = conn.execute(
        text(sql.HYBRID_QUERY.format(columns=sql.CHUNK_COLUMNS, where=where,
                                     access=sql.ACCESS_WHERE, model=model)),
        {**params, "q": vector, "question": question, "limit": limit, "df_cap": DF_CAP,
         "k1": weights.k1, "b": weights.b},
    ).mappings().all()
    terms = [term_signals(row["positions"], row["idf"], weights) for row in rows]
    signals = {"vector": [float(r["cosine"]) for r in rows],
               "lexical": [float(r["bm25"]) for r in rows],
               "phrase": [t[0] for t in terms], "proximity": [t[1] for t in terms],
               "coverage": [t[2] for t in terms]}
    return list(rows), signals


def _set_hnsw(conn: Connection, limit: int, plan_cache_mode: str) -> None:
    ef_search = min(EF_SEARCH_MAX, max(EF_SEARCH_MIN, limit))
    conn.execute(text(sql.SET_HNSW), {"ef_search": str(ef_search),
                                      "max_scan_tuples": str(MAX_SCAN_TUPLES),
                                      "plan_cache_mode": plan_cache_mode})


def _chunk(row: Any, score: float, vector_rank: int | None = None,
           lexical_rank: int | None = None) -> RetrievedChunk:
    return RetrievedChunk(
        chunk_id=row["chunk_id"], doc_id=row["doc_id"], ordinal=int(row["ordinal"]),
        content_hash=row["content_hash"], text=row["text"], title=row["title"],
        uri=row["uri"], source=row["source"], license=row["license"],
        privacy_class=row["privacy_class"], heading_path=tuple(row["heading_path"] or ()),
        score=score, vector_rank=vector_rank, lexical_rank=lexical_rank,
        injection_score=(None if row.get("injection_score") is None
                         else float(row["injection_score"])),
        page_start=row.get("page_start"), page_end=row.get("page_end"),
    )
