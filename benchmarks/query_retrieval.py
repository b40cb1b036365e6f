"""Retrieval benchmark on a real local stack (own ports and state, stopped at the end).

    .venv/bin/python -m benchmarks.query_retrieval \
        --squad ../shared/datasets/squad_v2_dev_5articles.json

Rows are written straight into Postgres (no workers). Each figure has its baseline in the same
run:
- Part A, quality: the SQuAD paragraphs as one-chunk documents (MiniLM embeddings); every
  answerable question retrieves top 10 in modes vector, lexical (BM25 over Postgres FTS) and
  hybrid (RRF), plus ``ts_rank_cd`` over an OR query as the plain-FTS baseline; hit@1/5/10 and
  MRR against the question's own paragraph.
- Part B, speed/recall: synthetic clustered 384-d unit vectors (200 gaussian clusters) at each
  ``--sizes`` total; HNSW (index rebuilt after the bulk load, build time measured) vs exact
  (brute force) latency p50/p95 and recall@10 of HNSW against exact, for a principal who sees
  everything and one who sees 5% of the documents (iterative scan).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.harness import configure_environment, running_stack
from benchmarks.ingest import percentile

MODES_A = ("vector", "lexical", "hybrid")
BASELINE_A = "lexical_ts_rank_cd"
CLUSTERS = 200
NOISE = 0.04  # per-dimension sigma: cosine to the cluster centre ~0.75 in 384-d
CHUNKS_PER_DOC = 100
FEW_SHARE = 0.05
EF_SWEEP = (100, 200)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--squad", type=Path, required=True, help="SQuAD JSON")
    parser.add_argument("--sizes", default="10000,100000",
                        help="Part B corpus sizes in chunks, comma-separated (reduce to save time)")
    parser.add_argument("--queries", type=int, default=200, help="Part B queries per size")
    parser.add_argument("--seed", type=int, default=20261126)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
    state = configure_environment()
    with running_stack(state, {}):
        from services.common.config import get_settings
        from services.common.db import make_engine

        engine = make_engine(get_settings().sqlalchemy_url)
        try:
            started = time.perf_counter()
            quality = part_a(engine, args.squad)
            speed = part_b(engine, sizes, args.queries, args.seed)
            results = {"quality": quality, "speed": speed, "machine": _machine(),
                       "wall_s": round(time.perf_counter() - started, 1)}
        finally:
            engine.dispose()
    report(results, args.out)


# --- Part A: quality on SQuAD -------------------------------------------------------------------

def squad_corpus(path: Path) -> tuple[list[dict[str, str]], list[tuple[str, str]]]:
    """Paragraphs (doc id, title, text) and answerable (question, doc id) pairs."""
    data = json.loads(path.read_text())
    paragraphs, questions = [], []
    for article in data["data"]:
        for paragraph in article["paragraphs"]:
            doc_id = f"squad/{len(paragraphs):04d}"
            paragraphs.append({"doc_id": doc_id, "title": article["title"],
                               "text": paragraph["context"]})
            questions += [(qa["question"], doc_id) for qa in paragraph["qas"]
                          if not qa.get("is_impossible", False)]
    return paragraphs, questions


def part_a(engine: Any, squad: Path) -> dict[str, Any]:
    from services.common.config import get_settings
    from services.common.embeddings import embedder_from_settings
    from services.rag.access import scope_for
    from services.rag.retrieval import retrieve

    paragraphs, questions = squad_corpus(squad)
    embedder = embedder_from_settings(get_settings())
    embedder.warm_up()
    started = time.perf_counter()
    vectors = embedder.encode([p["text"] for p in paragraphs])
    encode_paragraphs_s = time.perf_counter() - started
    _insert_squad(engine, paragraphs, vectors)
    started = time.perf_counter()
    query_vectors = embedder.encode([q for q, _ in questions])
    encode_questions_s = time.perf_counter() - started

    scope = scope_for("bench-reader", [], "public")
    runs: dict[str, Any] = {}
    for mode in (*MODES_A, BASELINE_A):
        ranks, latencies = [], []
        for (question, gold), vector in zip(questions, query_vectors, strict=True):
            started = time.perf_counter()
            if mode == BASELINE_A:
                doc_ids = _ts_rank_cd(engine, question, scope, 10)
            else:
                doc_ids = [c.doc_id for c in retrieve(engine, vector, question, scope, 10,
                                                      mode=mode)]
            latencies.append((time.perf_counter() - started) * 1000)
            ranks.append(doc_ids.index(gold) + 1 if gold in doc_ids else None)
        runs[mode] = {**_quality_metrics(ranks), "p50_ms": round(percentile(latencies, 50), 2),
                      "p95_ms": round(percentile(latencies, 95), 2)}
        print(f"  part A {mode:20} done", flush=True)
    return {"paragraphs": len(paragraphs), "questions": len(questions),
            "encode_paragraphs_s": round(encode_paragraphs_s, 1),
            "encode_questions_ms_each": round(encode_questions_s / len(questions) * 1000, 1),
            "modes": runs}


def _quality_metrics(ranks: list[int | None]) -> dict[str, float]:
    n = len(ranks)
    metrics = {f"hit@{k}": round(sum(1 for r in ranks if r is not None and r <= k) / n, 4)
               for k in (1, 5, 10)}
    metrics["mrr"] = round(sum(1 / r for r in ranks if r is not None) / n, 4)
    return metrics


def _insert_squad(engine: Any, paragraphs: list[dict[str, str]], vectors: np.ndarray) -> None:
    import hashlib

    from sqlalchemy import text

    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO documents (doc_id, version, title, source, uri, license, privacy_class,"
            " chunk_count) VALUES (:doc_id, 1, :title, 'squad-v2-dev', :uri, 'CC-BY-SA-4.0',"
            " 'public', 1)"),
            [{**p, "uri": f"squad://{p['doc_id']}"} for p in paragraphs])
        conn.execute(text(
            "INSERT INTO chunks (chunk_id, doc_id, ordinal, content_hash, text, word_count,"
            " model_id, embedding) VALUES (:chunk_id, :doc_id, 0, :hash, :text, :words,"
            " 'all-MiniLM-L6-v2', :embedding)"),
            [{"chunk_id": f"{p['doc_id']}#0", "doc_id": p["doc_id"], "text": p["text"],
              "hash": hashlib.sha256(p["text"].encode()).hexdigest(),
              "words": len(p["text"].split()), "embedding": v}
             for p, v in zip(paragraphs, vectors, strict=True)])
        conn.execute(text("ANALYZE documents"))
        conn.execute(text("ANALYZE chunks"))


def _ts_rank_cd(engine: Any, question: str, scope: Any, k: int) -> list[str]:
    """The plain-FTS baseline: OR of the question's lexemes ranked by ts_rank_cd (length
    normalization 2, the best of 0/1/2 on this set), same access filter as retrieval."""
    from sqlalchemy import text

    from services.rag import retrieval_sql

    query = ("WITH q AS (SELECT CAST(replace(CAST(plainto_tsquery('english', :q) AS text), "
             "'&', '|') AS tsquery) AS tq) "
             "SELECT c.doc_id FROM chunks c JOIN documents d ON d.doc_id = c.doc_id, q "
             f"WHERE c.tsv @@ q.tq AND {retrieval_sql.ACCESS_WHERE} "
             "ORDER BY ts_rank_cd(c.tsv, q.tq, 2) DESC, c.chunk_id LIMIT :k")
    with engine.connect() as conn:
        rows = conn.execute(text(query), {"q": question, "k": k, "max_rank": scope.max_rank,
                                          "principals": list(scope.principals)})
        return [r[0] for r in rows]


# --- Part B: speed and recall on synthetic vectors ----------------------------------------------

def clustered(rng: np.random.Generator, centers: np.ndarray, n: int) -> np.ndarray:
    points = centers[rng.integers(0, len(centers), n)]
    points = points + rng.standard_normal(points.shape).astype(np.float32) * NOISE
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)


def part_b(engine: Any, sizes: list[int], n_queries: int, seed: int) -> dict[str, Any]:
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
            "index": "hnsw m=16 ef_construction=64 (as migration 0001), ef_search=40"}


def _load_synthetic(engine: Any, rng: np.random.Generator, centers: np.ndarray, start: int,
                    end: int) -> None:
    """Documents of CHUNKS_PER_DOC chunks; FEW_SHARE of the documents are readable by group
    ``bench:few``, the rest by ``bench:many``. Chunks by binary COPY."""
    from sqlalchemy import text

    first_doc, last_doc = start // CHUNKS_PER_DOC, -(-end // CHUNKS_PER_DOC)
    every = round(1 / FEW_SHARE)
    with engine.begin() as conn:
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
                                    f"synthetic-{i}", f"synthetic chunk {i}", 3, "synthetic",
                                    vector])
        raw.driver_connection.commit()
    finally:
        raw.close()


def _drop_hnsw(engine: Any) -> None:
    from sqlalchemy import text

    with engine.begin() as conn:
        conn.execute(text("DROP INDEX IF EXISTS chunks_embedding_hnsw"))


def _build_hnsw(engine: Any) -> float:
    """Same definition as migration 0001, built once over the loaded rows (much faster than
    inserting into a live graph); enough maintenance memory to build in memory."""
    from sqlalchemy import text

    with engine.begin() as conn:
        conn.execute(text("SET LOCAL maintenance_work_mem = '2GB'"))
        conn.execute(text("SET LOCAL max_parallel_maintenance_workers = 1"))
        started = time.perf_counter()
        conn.execute(text(
            "CREATE INDEX chunks_embedding_hnsw ON chunks "
            "USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64)"))
        elapsed = time.perf_counter() - started
    with engine.begin() as conn:
        conn.execute(text("ANALYZE chunks"))
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

    from services.rag import retrieval_sql as sql
    from services.rag.retrieval import RetrievalFilters, _where

    where, params = _where(scope, RetrievalFilters())
    with engine.begin() as conn:
        conn.execute(text(sql.SET_EXACT if mode == "exact" else sql.SET_HNSW),
                     {"ef_search": "40", "max_scan_tuples": "20000"})
        plan = conn.execute(
            text("EXPLAIN " + sql.VECTOR_QUERY.format(columns=sql.CHUNK_COLUMNS, where=where)),
            {**params, "q": vector, "limit": 10}).all()
    return any("chunks_embedding_hnsw" in row[0] for row in plan)


# --- report -------------------------------------------------------------------------------------

def _machine() -> dict[str, object]:
    import os
    import platform

    return {"cpus": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(),
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def report(results: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "query_retrieval.json").write_text(json.dumps(results, indent=2))
    chart = write_chart(results, out / "query_retrieval.png")
    q = results["quality"]
    print("\n== retrieval benchmark ==")
    print(f"Part A: SQuAD v2 dev, {q['paragraphs']} paragraphs, {q['questions']} answerable "
          f"questions, top 10 (encode: {q['encode_paragraphs_s']} s for the paragraphs, "
          f"{q['encode_questions_ms_each']} ms per question)")
    print(f"{'mode':22} {'hit@1':>7} {'hit@5':>7} {'hit@10':>7} {'MRR':>7} {'p50 ms':>8} "
          f"{'p95 ms':>8}")
    for mode, m in q["modes"].items():
        label = mode + (" (baseline)" if mode == BASELINE_A else "")
        print(f"{label:22} {m['hit@1']:>7.3f} {m['hit@5']:>7.3f} {m['hit@10']:>7.3f} "
              f"{m['mrr']:>7.3f} {m['p50_ms']:>8.1f} {m['p95_ms']:>8.1f}")
    s = results["speed"]
    print(f"\nPart B: synthetic 384-d, {s['clusters']} clusters, {s['queries']} queries, "
          f"top {s['top_k']}; {s['index']}")
    print(f"{'chunks':>8} {'build s':>8} {'scope':>10} {'HNSW p50':>9} {'p95':>7} "
          f"{'exact p50':>10} {'p95':>7} {'recall@10':>10} {'HNSW plan':>10}")
    for stage in s["stages"]:
        for name, m in stage["scopes"].items():
            print(f"{stage['chunks']:>8} {stage['hnsw_build_s']:>8.1f} {name:>10} "
                  f"{m['hnsw']['p50_ms']:>9.1f} {m['hnsw']['p95_ms']:>7.1f} "
                  f"{m['exact']['p50_ms']:>10.1f} {m['exact']['p95_ms']:>7.1f} "
                  f"{m['recall_at_10']:>10.3f} {str(m['hnsw']['plan_uses_hnsw']):>10}")
    print(f"\nHNSW ef_search sweep (recall@10 / p50 ms): "
          f"{'  '.join(f'ef={ef}' for ef in ('40', *map(str, EF_SWEEP)))}")
    for stage in s["stages"]:
        for name, m in stage["scopes"].items():
            cells = "  ".join(f"{v['recall_at_10']:.3f}/{v['p50_ms']:.1f}"
                              for v in m["ef_search_sweep"].values())
            print(f"{stage['chunks']:>8} {name:>10}  {cells}")
    print(f"wall time {results['wall_s']} s; results: {out / 'query_retrieval.json'}; "
          f"chart: {chart}")


def write_chart(results: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(17, 4.8))
    modes = results["quality"]["modes"]
    metrics = ("hit@1", "hit@5", "hit@10", "mrr")
    width = 0.8 / len(modes)
    colors = {"vector": "#7fb3d5", "lexical": "#f0b27a", "hybrid": "#2a7ab9",
              BASELINE_A: "#999"}
    for i, (mode, m) in enumerate(modes.items()):
        ax1.bar([x + i * width for x in range(len(metrics))], [m[k] for k in metrics],
                width=width, label=mode, color=colors.get(mode))
    ax1.set_xticks([x + width * (len(modes) - 1) / 2 for x in range(len(metrics))], metrics)
    ax1.set_ylim(0, 1.18)
    ax1.set_title(f"SQuAD retrieval quality ({results['quality']['questions']} questions)")
    ax1.legend(fontsize=8, ncol=2, loc="upper left")
    labels, hnsw, exact, recall = [], [], [], []
    for stage in results["speed"]["stages"]:
        for name, m in stage["scopes"].items():
            labels.append(f"{stage['chunks'] // 1000}k\n{name}")
            hnsw.append((m["hnsw"]["p50_ms"], m["hnsw"]["p95_ms"]))
            exact.append((m["exact"]["p50_ms"], m["exact"]["p95_ms"]))
            recall.append(m["recall_at_10"])
    xs = np.arange(len(labels))
    ax2.bar(xs - 0.2, [h[0] for h in hnsw], 0.4, color="#2a7ab9", label="HNSW p50")
    ax2.bar(xs + 0.2, [e[0] for e in exact], 0.4, color="#999", label="exact p50")
    ax2.scatter(xs - 0.2, [h[1] for h in hnsw], color="k", marker="_", s=200, label="p95")
    ax2.scatter(xs + 0.2, [e[1] for e in exact], color="k", marker="_", s=200)
    ax2.set_yscale("log")
    ax2.set_xticks(xs, labels, fontsize=8)
    ax2.set_ylabel("latency per query (ms, log)")
    ax2.set_title("Vector retrieval latency: HNSW vs exact")
    ax2.legend(fontsize=8)
    ax3.bar(xs, recall, color="#2a7ab9")
    for x, r in zip(xs, recall, strict=True):
        ax3.text(x, r + 0.01, f"{r:.3f}", ha="center", fontsize=8)
    ax3.set_xticks(xs, labels, fontsize=8)
    ax3.set_ylim(0, 1.08)
    ax3.set_title("Recall@10 of HNSW against exact")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


if __name__ == "__main__":
    main()
