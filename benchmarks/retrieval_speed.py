"""Part B of the retrieval benchmark: speed and recall of HNSW against exact search.

Synthetic clustered 384-d unit vectors (200 gaussian clusters) at each size; the HNSW index is
rebuilt after the bulk load (build time measured); latency p50/p95 and recall@10 of HNSW against
exact (brute force), for a principal who sees everything and one who sees 5% of the documents
(iterative scan), plus an ``ef_search`` sweep. Run with ``--sizes`` by
``benchmarks.query_retrieval``.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from benchmarks.ingest import percentile

CLUSTERS = 200
NOISE = 0.04  # per-dimension sigma: cosine to the cluster centre ~0.75 in 384-d
CHUNKS_PER_DOC = 100
FEW_SHARE = 0.05
EF_SWEEP = (100, 200)


def clustered(rng: np.random.Generator, centers: np.ndarray, n: int) -> np.ndarray:
    points = centers[rng.integers(0, len(centers), n)]
    points = points + rng.standard_normal(points.shape).astype(np.float32) * NOISE
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)


def run(engine: Any, sizes: list[int], n_queries: int, seed: int) -> dict[str, Any]:
    from services.rag.access import scope_for

    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((CLUSTERS, 384)).astype(np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    scopes = {"sees_all": scope_for("bench-all", ["bench:few", "bench:many"], "public"),
              "sees_5pct": scope_for("bench-few", ["bench:few"], "public")}
    stages, loaded = [], 0
    for size in sizes:
        _drop_hnsw(engine)
        started = time.perf_counter()
        _load_synthetic(engine, rng, centers, loaded, size)
        insert_s = time.perf_counter() - started
        loaded = size
        build_s = _build_hnsw(engine)
        queries = clustered(rng, centers, n_queries)
        stage: dict[str, Any] = {"chunks": size, "insert_s": round(insert_s, 1),
                                 "hnsw_build_s": round(build_s, 1), "scopes": {}}
        for name, scope in scopes.items():
            stage["scopes"][name] = _measure(engine, queries, scope)
        stages.append(stage)
        print(f"  part B {size} chunks done (insert {insert_s:.0f} s, build {build_s:.0f} s)",
              flush=True)
    return {"clusters": CLUSTERS, "noise_sigma": NOISE, "queries": n_queries,
            "few_share": FEW_SHARE, "top_k": 10, "stages": stages,
            "index": "hnsw m=16 ef_construction=64 (as migration 0010, per model), ef_search=40"}


def _load_synthetic(engine: Any, rng: np.random.Generator, centers: np.ndarray, start: int,
                    end: int) -> None:
    """Documents of CHUNKS_PER_DOC chunks; FEW_SHARE of the documents are readable by group
    ``bench:few``, the rest by ``bench:many``. Chunks by binary COPY."""
    from sqlalchemy import text

    first_doc, last_doc = start // CHUNKS_PER_DOC, -(-end // CHUNKS_PER_DOC)
    every = round(1 / FEW_SHARE)
    with engine.begin() as conn:
        model_id = _active(conn)  # the chunks carry the active model: its vectors are searched
        conn.execute(text(
            "INSERT INTO documents (doc_id, version, title, source, privacy_class, acl) "
            "VALUES (:d, 1, :d, 'synthetic', 'public', :acl) ON CONFLICT DO NOTHING"),
            [{"d": f"synthetic/{i:06d}", "acl": ["bench:few" if i % every == 0 else "bench:many"]}
             for i in range(first_doc, last_doc)])
    raw = engine.raw_connection()
    try:
        cursor = raw.driver_connection.cursor()
        for batch_start in range(start, end, 10_000):
            batch_end = min(end, batch_start + 10_000)
            vectors = clustered(rng, centers, batch_end - batch_start)
            with cursor.copy("COPY chunks (chunk_id, doc_id, ordinal, content_hash, text, "
                             "word_count, model_id, embedding) FROM STDIN WITH (FORMAT BINARY)"
                             ) as copy:
                copy.set_types(["text", "text", "int4", "text", "text", "int4", "text",
                                "vector"])
                for offset, vector in enumerate(vectors):
                    i = batch_start + offset
                    copy.write_row([f"synthetic/{i // CHUNKS_PER_DOC:06d}#{i % CHUNKS_PER_DOC}",
                                    f"synthetic/{i // CHUNKS_PER_DOC:06d}", i % CHUNKS_PER_DOC,
                                    f"synthetic-{i}", f"synthetic chunk {i}", 3, model_id,
                                    vector])
        raw.driver_connection.commit()
    finally:
        raw.close()


def _active(conn: Any) -> str:
    from services.common import index_registry

    model_id = index_registry.active_model(conn)
    if model_id is None:
        raise RuntimeError("no active embedding model: run the migrations")
    return model_id


def _drop_hnsw(engine: Any) -> None:
    from sqlalchemy import text

    from services.common import index_registry

    with engine.begin() as conn:
        # Retrieval reads the active model's vectors (chunk_embeddings, filled from chunks by
        # migration 0010's trigger) through that model's partial HNSW index.
        name = index_registry.index_name(_active(conn))
        conn.execute(text(f"DROP INDEX IF EXISTS {name}"))
        # chunks.embedding's own index is no longer read by retrieval: not maintained here.
        conn.execute(text("DROP INDEX IF EXISTS chunks_embedding_hnsw"))


def _build_hnsw(engine: Any) -> float:
    """Same definition as migration 0010 (the active model's partial index), built once over
    the loaded rows (much faster than inserting into a live graph); enough maintenance memory
    to build in memory."""
    from sqlalchemy import text

    from services.common import index_registry

    with engine.begin() as conn:
        conn.execute(text("SET LOCAL maintenance_work_mem = '2GB'"))
        conn.execute(text("SET LOCAL max_parallel_maintenance_workers = 1"))
        started = time.perf_counter()
        conn.execute(text(index_registry.create_index_sql(_active(conn))))
        elapsed = time.perf_counter() - started
    with engine.begin() as conn:
        conn.execute(text("ANALYZE chunks"))
        conn.execute(text("ANALYZE chunk_embeddings"))
        conn.execute(text("ANALYZE documents"))
    return elapsed


def _measure(engine: Any, queries: np.ndarray, scope: Any) -> dict[str, Any]:
    from services.rag.retrieval import retrieve

    results: dict[str, Any] = {}
    ids: dict[str, list[list[str]]] = {}
    for label, mode in (("hnsw", "vector"), ("exact", "exact")):
        for vector in queries[:5]:  # warm the buffers and the plan cache
            retrieve(engine, vector, "", scope, 10, mode=mode)
        latencies, found = [], []
        for vector in queries:
            started = time.perf_counter()
            got = retrieve(engine, vector, "", scope, 10, mode=mode)
            latencies.append((time.perf_counter() - started) * 1000)
            found.append([c.chunk_id for c in got])
        ids[label] = found
        results[label] = {"p50_ms": round(percentile(latencies, 50), 2),
                          "p95_ms": round(percentile(latencies, 95), 2),
                          "returned_min": min(len(f) for f in found),
                          "plan_uses_hnsw": _plan_uses_hnsw(engine, queries[0], scope, mode)}
    overlaps = _overlaps(ids["hnsw"], ids["exact"])
    results["recall_at_10"] = round(float(np.mean(overlaps)), 4)
    results["recall_at_10_min"] = round(float(np.min(overlaps)), 2)
    # ef_search sweep: retrieve() sets ef_search = max(40, rows asked for), so asking for ef
    # rows and keeping the first 10 is the top 10 at that ef_search.
    sweep = {"40": {"p50_ms": results["hnsw"]["p50_ms"], "p95_ms": results["hnsw"]["p95_ms"],
                    "recall_at_10": results["recall_at_10"]}}
    for ef in EF_SWEEP:
        latencies, found = [], []
        for vector in queries:
            started = time.perf_counter()
            found.append([c.chunk_id for c in retrieve(engine, vector, "", scope, ef,
                                                        mode="vector")[:10]])
            latencies.append((time.perf_counter() - started) * 1000)
        sweep[str(ef)] = {"p50_ms": round(percentile(latencies, 50), 2),
                          "p95_ms": round(percentile(latencies, 95), 2),
                          "recall_at_10": round(float(np.mean(_overlaps(found, ids["exact"]))),
                                                4)}
    results["ef_search_sweep"] = sweep
    return results


def _overlaps(found: list[list[str]], exact: list[list[str]]) -> list[float]:
    return [len(set(f) & set(e)) / max(len(e), 1) for f, e in zip(found, exact, strict=True)]


def _plan_uses_hnsw(engine: Any, vector: np.ndarray, scope: Any, mode: str) -> bool:
    from sqlalchemy import text

    from services.common import index_registry
    from services.rag import retrieval_sql as sql
    from services.rag.retrieval import RetrievalFilters, _where

    where, params = _where(scope, RetrievalFilters())
    with engine.begin() as conn:
        model = index_registry.model_literal(index_registry.active_model(conn))
        conn.execute(text(sql.SET_EXACT if mode == "exact" else sql.SET_HNSW),
                     {"ef_search": "40", "max_scan_tuples": "20000",
                      "plan_cache_mode": "force_custom_plan"})
        plan = conn.execute(
            text("EXPLAIN " + sql.VECTOR_QUERY.format(columns=sql.CHUNK_COLUMNS, where=where,
                                                      model=model)),
            {**params, "q": vector, "limit": 10}).all()
    return any("chunk_embeddings_hnsw" in row[0] for row in plan)


