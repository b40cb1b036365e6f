"""Retrieval benchmark: the platform's modes beside a naive baseline, on unseen-by-tuning data.

    .venv/bin/python -m benchmarks.query_retrieval \
        --train ../shared/datasets/squad_v11_train_11articles.json \
        --dev ../shared/datasets/squad_v2_dev_5articles.json

It starts its own Postgres (own state directory and port, stopped at the end) and writes the
documents straight into it the way the embedder does: every paragraph is a document, chunked by
the ingest chunker with the configured sizes and embedded with the configured model; then every
answerable question retrieves the top 10 through ``services.rag.retrieval.retrieve`` (the SQL the
rag worker runs, access filter included) in each mode. In the same run the naive baseline
(``benchmarks.retrieval_baseline``: exact cosine + rank-bm25 + RRF over whole paragraphs) ranks
the same questions. A question hits when a chunk of its paragraph is in the top k.

Data sets (``benchmarks.retrieval_data``): 1) the train articles plus the dev paragraphs as
distractors, split by article into ``tune`` (the only part any setting was chosen on) and
``held_out``; 2) the dev set on its own. ``--sizes`` adds Part B (HNSW speed/recall,
``benchmarks.retrieval_speed``).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.ingest import percentile
from benchmarks.retrieval_baseline import NaiveBaseline, first_rank, quality
from benchmarks.retrieval_data import DataSet, Paragraph, Question, build_datasets

POSTGRES_PORT = "45632"  # apart from the stack (15432), tests (25432/35432/45432), harness (35532)
TOP = 10
Encode = Callable[[list[str]], np.ndarray]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=Path, required=True, help="SQuAD 1.1 train subset JSON")
    parser.add_argument("--dev", type=Path, required=True, help="SQuAD 2.0 dev subset JSON")
    parser.add_argument("--modes", default="hybrid,lexical,vector,exact",
                        help="platform modes, comma-separated")
    parser.add_argument("--input-guard", action="store_true",
                        help="also run hybrid on the question as the input guardrail stage "
                             "passes it on (default policy's PII redaction)")
    parser.add_argument("--sizes", default="",
                        help="Part B corpus sizes in chunks, e.g. 10000,100000 (default: skip)")
    parser.add_argument("--queries", type=int, default=200, help="Part B queries per size")
    parser.add_argument("--seed", type=int, default=20261126)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
    datasets = build_datasets(args.train, args.dev)
    with private_postgres() as engine:
        started = time.perf_counter()
        results: dict[str, Any] = {"command": _command(args), "top": TOP,
                                   "datasets": run_quality(engine, datasets, modes,
                                                           args.input_guard)}
        if sizes:
            from benchmarks import retrieval_speed

            results["speed"] = retrieval_speed.run(engine, sizes, args.queries, args.seed)
        results["machine"] = _machine()
        results["wall_s"] = round(time.perf_counter() - started, 1)
    from benchmarks.retrieval_report import report

    report(results, args.out)


@contextmanager
def private_postgres() -> Iterator[Any]:
    """Postgres (pgvector) on its own port and state directory, migrated; stopped at exit."""
    state = Path(tempfile.mkdtemp(prefix="customllm-retrieval-bench-"))
    os.environ.update({"CUSTOMLLM_STATE_DIR": str(state), "CUSTOMLLM_POSTGRES_PORT": POSTGRES_PORT,
                       "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                       "CUSTOMLLM_LOG_LEVEL": "WARNING"})
    os.environ.pop("CUSTOMLLM_DATABASE_URL", None)
    from services.common import migrate
    from services.common.config import get_settings
    from services.common.db import make_engine
    from services.stack import postgres

    settings = get_settings()
    try:
        postgres.start(state, settings.postgres_port)
        migrate.upgrade(settings.sqlalchemy_url)
        engine = make_engine(settings.sqlalchemy_url)
        try:
            yield engine
        finally:
            engine.dispose()
    finally:
        postgres.stop(state)
        if os.environ.get("CUSTOMLLM_BENCH_KEEP_STATE") != "1":
            shutil.rmtree(state, ignore_errors=True)


def cached_encoder() -> tuple[Encode, dict[str, float]]:
    """The configured embedder, each distinct text encoded once (the dev paragraphs are in both
    data sets); ``timing`` collects the encode seconds."""
    from services.common.config import get_settings
    from services.common.embeddings import embedder_from_settings

    embedder = embedder_from_settings(get_settings())
    embedder.warm_up()
    cache: dict[str, np.ndarray] = {}
    timing = {"encode_s": 0.0, "texts": 0.0}

    def encode(texts: list[str]) -> np.ndarray:
        missing = list(dict.fromkeys(t for t in texts if t not in cache))
        if missing:
            started = time.perf_counter()
            for text, vector in zip(missing, embedder.encode(missing), strict=True):
                cache[text] = vector
            timing["encode_s"] += time.perf_counter() - started
            timing["texts"] += len(missing)
        return np.stack([cache[t] for t in texts]) if texts else np.zeros((0, embedder.dim))

    return encode, timing


def input_guard() -> Callable[[str], str]:
    """The question as the default policy's input stage passes it to retrieval: normalized, PII
    redacted (a person's name becomes ``<PERSON>``)."""
    from services.common.text_normalize import normalize
    from services.guardrails.checks.pii import check_pii
    from services.guardrails.policy import load_policy_file

    policy = load_policy_file(Path("services/guardrails/policies/default.yaml")).input.pii
    return lambda question: check_pii(normalize(question).text, policy)[1]


def run_quality(engine: Any, datasets: list[DataSet], modes: list[str],
                guarded: bool = False) -> list[dict[str, Any]]:
    encode, timing = cached_encoder()
    guard = input_guard() if guarded else None
    out = []
    for dataset in datasets:
        chunks = load_index(engine, dataset.paragraphs, encode)
        baseline = NaiveBaseline([p.doc_id for p in dataset.paragraphs],
                                 [p.text for p in dataset.paragraphs],
                                 encode([p.text for p in dataset.paragraphs]))
        parts = {}
        for part, questions in dataset.parts.items():
            parts[part] = evaluate(engine, baseline, questions, encode, modes, guard)
            print(f"  {dataset.name}/{part}: {len(questions)} questions done", flush=True)
        out.append({"name": dataset.name, "description": dataset.description,
                    "paragraphs": len(dataset.paragraphs), "chunks": chunks, "parts": parts})
    print(f"  encoded {timing['texts']:.0f} texts in {timing['encode_s']:.0f} s", flush=True)
    return out


def load_index(engine: Any, paragraphs: tuple[Paragraph, ...], encode: Encode) -> int:
    """Replace the index with ``paragraphs``, chunked as ingest does; returns the chunk count."""
    from sqlalchemy import text

    from services.common.config import get_settings
    from services.ingest.chunking import chunk_document
    from services.ingest.config import ingest_settings

    settings = get_settings()
    config = ingest_settings().chunking
    rows = []
    for p in paragraphs:
        for chunk in chunk_document(p.text, "text/plain", config):
            rows.append({"chunk_id": f"{p.doc_id}#{chunk.ordinal}", "doc_id": p.doc_id,
                         "ordinal": chunk.ordinal, "hash": chunk.content_hash,
                         "text": chunk.text, "words": chunk.word_count})
    vectors = encode([r["text"] for r in rows])
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM chunks"))
        conn.execute(text("DELETE FROM documents"))
        conn.execute(text(
            "INSERT INTO documents (doc_id, version, title, source, uri, license, privacy_class,"
            " chunk_count, content_hash) VALUES (:doc_id, 1, :title, 'squad', :uri,"
            " 'CC-BY-SA-4.0', 'public', 1, :hash)"),
            [{"doc_id": p.doc_id, "title": p.title, "uri": f"squad://{p.doc_id}",
              "hash": hashlib.sha256(p.text.encode()).hexdigest()} for p in paragraphs])
        conn.execute(text(
            "INSERT INTO chunks (chunk_id, doc_id, ordinal, content_hash, text, word_count,"
            " model_id, embedding) VALUES (:chunk_id, :doc_id, :ordinal, :hash, :text, :words,"
            " :model_id, :embedding)"),
            [{**r, "model_id": settings.embedding_model_id, "embedding": v}
             for r, v in zip(rows, vectors, strict=True)])
    with engine.begin() as conn:
        conn.execute(text("ANALYZE documents"))
        conn.execute(text("ANALYZE chunks"))
    return len(rows)


def evaluate(engine: Any, baseline: NaiveBaseline, questions: tuple[Question, ...],
             encode: Encode, modes: list[str],
             guard: Callable[[str], str] | None = None) -> dict[str, Any]:
    """Metrics per platform mode and per naive mode on the same questions; with ``guard``,
    also ``hybrid_guarded``: hybrid on the question as the input stage passes it on."""
    from services.rag.access import scope_for
    from services.rag.retrieval import retrieve

    vectors = encode([q.text for q in questions])
    runs = [(mode, mode, [q.text for q in questions], vectors) for mode in modes]
    if guard is not None:
        texts = [guard(q.text) for q in questions]
        runs.append(("hybrid_guarded", "hybrid", texts, encode(texts)))
    scope = scope_for("bench-reader", [], "public")
    ranks: dict[str, list[int | None]] = {}
    latencies: dict[str, list[float]] = {name: [] for name, *_ in runs}
    for name, mode, texts, mode_vectors in runs:
        for question, asked, vector in zip(questions, texts, mode_vectors, strict=True):
            started = time.perf_counter()
            got = retrieve(engine, vector, asked, scope, TOP, mode=mode)
            latencies[name].append((time.perf_counter() - started) * 1000)
            ranks.setdefault(name, []).append(first_rank(question.doc_id,
                                                         [c.doc_id for c in got]))
    for question, vector in zip(questions, vectors, strict=True):
        for mode, ranked in baseline.rank(question.text, vector).items():
            ranks.setdefault(mode, []).append(first_rank(question.doc_id, ranked))
    result: dict[str, Any] = {"questions": len(questions), "modes": {}}
    for mode, found in ranks.items():
        entry: dict[str, Any] = quality(found)
        if mode in latencies:
            entry["p50_ms"] = round(percentile(latencies[mode], 50), 2)
            entry["p95_ms"] = round(percentile(latencies[mode], 95), 2)
        result["modes"][mode] = entry
    return result


def _command(args: argparse.Namespace) -> str:
    parts = [".venv/bin/python -m benchmarks.query_retrieval", f"--train {args.train}",
             f"--dev {args.dev}"]
    if args.input_guard:
        parts.append("--input-guard")
    if args.sizes:
        parts.append(f"--sizes {args.sizes}")
    return " ".join(parts)


def _machine() -> dict[str, object]:
    import platform

    return {"cpus": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(),
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


if __name__ == "__main__":
    main()
