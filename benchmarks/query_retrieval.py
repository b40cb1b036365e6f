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
the same questions. Platform results are counted as the query path counts them, in passages
(``unit="passage"``: a paragraph the chunker split is one result, as it is one citation), and a
question hits when its paragraph is among the first k.

``--encoders minilm,e5`` compares encoders in the same run: the first is the active model (and
the naive baseline's), each other one is indexed beside it the way a shadow re-index leaves it
(``chunk_embeddings`` with its own partial HNSW index) and retrieved with ``model_id``, giving
``hybrid@e5`` and ``vector@e5`` next to ``hybrid``/``vector`` (MiniLM) and the naive baseline.

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
    parser.add_argument("--encoders", default="minilm",
                        help="shipped encoders, comma-separated (e.g. minilm,e5): the first is "
                             "the index's active model (and the naive baseline's); each other "
                             "one is shadow-indexed into chunk_embeddings and adds "
                             "hybrid@NAME / vector@NAME")
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
    encoders = [e.strip() for e in args.encoders.split(",") if e.strip()]
    if encoders:
        from services.common.embeddings import canonical_model_id

        os.environ["CUSTOMLLM_EMBEDDING_MODEL_ID"] = canonical_model_id(encoders[0])
    with private_postgres() as engine:
        started = time.perf_counter()
        results: dict[str, Any] = {"command": _command(args), "top": TOP,
                                   "datasets": run_quality(engine, datasets, modes,
                                                           args.input_guard, encoders)}
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
        # As `customllm migrate` does: an empty index serves the configured encoder, the one
        # ``load_index`` embeds with (migration 0010 alone seeds the torch MiniLM unless
        # CUSTOMLLM_EMBEDDING_MODEL_ID is set, and vector search then finds nothing).
        migrate.upgrade(settings.sqlalchemy_url, embedding_model_id=settings.embedding_model_id)
        engine = make_engine(settings.sqlalchemy_url)
        try:
            yield engine
        finally:
            engine.dispose()
    finally:
        postgres.stop(state)
        if os.environ.get("CUSTOMLLM_BENCH_KEEP_STATE") != "1":
            shutil.rmtree(state, ignore_errors=True)


def cached_encoder(model: str | None = None) -> tuple[Encode, dict[str, float], Encode]:
    """A shipped encoder (default: the configured one), each distinct text encoded once per
    role (the dev paragraphs are in both data sets). Returns (passages, timing, queries):
    ``timing`` collects the encode seconds and texts."""
    from services.common.config import get_settings
    from services.common.embeddings import embedder_for, embedder_from_settings

    embedder = embedder_for(model) if model else embedder_from_settings(get_settings())
    embedder.warm_up()
    cache: dict[tuple[str, str], np.ndarray] = {}
    timing = {"encode_s": 0.0, "texts": 0.0, "model_id": embedder.model_id}

    def make(role: str) -> Encode:
        run = embedder.encode_queries if role == "query" else embedder.encode_passages

        def encode(texts: list[str]) -> np.ndarray:
            missing = list(dict.fromkeys(t for t in texts if (role, t) not in cache))
            if missing:
                started = time.perf_counter()
                for text, vector in zip(missing, run(missing), strict=True):
                    cache[(role, text)] = vector
                timing["encode_s"] += time.perf_counter() - started
                timing["texts"] += len(missing)
            return (np.stack([cache[(role, t)] for t in texts]) if texts
                    else np.zeros((0, embedder.dim)))

        return encode

    return make("passage"), timing, make("query")


def input_guard() -> Callable[[str], str]:
    """The question as the default policy's input stage passes it to retrieval: normalized, PII
    redacted (a person's name becomes ``<PERSON>``)."""
    from services.common.text_normalize import normalize
    from services.guardrails.checks.pii import check_pii
    from services.guardrails.policy import load_policy_file

    policy = load_policy_file(Path("services/guardrails/policies/default.yaml")).input.pii
    return lambda question: check_pii(normalize(question).text, policy)[1]


def run_quality(engine: Any, datasets: list[DataSet], modes: list[str],
                guarded: bool = False, encoders: list[str] | None = None
                ) -> list[dict[str, Any]]:
    """``encoders``: the first is the index's active model (chunks.embedding, the naive
    baseline's vectors); every other one is indexed beside it (``chunk_embeddings``, its own
    partial HNSW index, as a shadow re-index leaves it) and adds ``hybrid@NAME`` and
    ``vector@NAME`` on the same questions."""
    names = encoders or ["minilm"]
    loaded = {name: cached_encoder(name) for name in names}
    passages, timing, queries = loaded[names[0]]
    extra = {name: loaded[name] for name in names[1:]}
    guard = input_guard() if guarded else None
    out = []
    for dataset in datasets:
        chunks = load_index(engine, dataset.paragraphs, passages,
                            {name: (enc[1]["model_id"], enc[0]) for name, enc in extra.items()})
        baseline = NaiveBaseline([p.doc_id for p in dataset.paragraphs],
                                 [p.text for p in dataset.paragraphs],
                                 passages([p.text for p in dataset.paragraphs]))
        parts = {}
        for part, questions in dataset.parts.items():
            parts[part] = evaluate(engine, baseline, questions, queries, modes, guard,
                                   {name: (enc[1]["model_id"], enc[2])
                                    for name, enc in extra.items()})
            print(f"  {dataset.name}/{part}: {len(questions)} questions done", flush=True)
        out.append({"name": dataset.name, "description": dataset.description,
                    "paragraphs": len(dataset.paragraphs), "chunks": chunks, "parts": parts})
    for name, (_, timed, _) in loaded.items():
        rate = timed["texts"] / max(timed["encode_s"], 1e-9)
        print(f"  {name}: encoded {timed['texts']:.0f} texts in {timed['encode_s']:.0f} s "
              f"({rate:.1f} texts/s)", flush=True)
    if out:
        out[0]["encoders"] = {name: {"model_id": timed["model_id"],
                                     "texts": int(timed["texts"]),
                                     "encode_s": round(timed["encode_s"], 1),
                                     "texts_per_s": round(timed["texts"]
                                                          / max(timed["encode_s"], 1e-9), 1)}
                              for name, (_, timed, _) in loaded.items()}
    return out


def load_index(engine: Any, paragraphs: tuple[Paragraph, ...], encode: Encode,
               extra: dict[str, tuple[str, Encode]] | None = None) -> int:
    """Replace the index with ``paragraphs``, chunked as ingest does; returns the chunk count.
    ``extra``: name → (model id, passage encoder) of models indexed beside the active one."""
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
    from services.common import index_registry

    with engine.connect() as conn:
        active = index_registry.active_model(conn)
    if active != settings.embedding_model_id:
        # Retrieval without a model id searches the active model's vectors: none would be
        # found, and every hybrid figure would silently be a lexical one.
        raise RuntimeError(f"the index serves {active} but the chunks were embedded with "
                           f"{settings.embedding_model_id}")

    for model_id, model_encode in (extra or {}).values():
        model_vectors = model_encode([r["text"] for r in rows])
        with engine.begin() as conn:
            index_registry.register(conn, model_id)
            index_registry.store_vectors(conn, model_id, [
                (r["chunk_id"], v) for r, v in zip(rows, model_vectors, strict=True)])
        index_registry.ensure_index(engine, model_id)
    with engine.begin() as conn:
        conn.execute(text("ANALYZE documents"))
        conn.execute(text("ANALYZE chunks"))
        conn.execute(text("ANALYZE chunk_embeddings"))
    return len(rows)


def evaluate(engine: Any, baseline: NaiveBaseline, questions: tuple[Question, ...],
             encode: Encode, modes: list[str],
             guard: Callable[[str], str] | None = None,
             extra: dict[str, tuple[str, Encode]] | None = None) -> dict[str, Any]:
    """Metrics per platform mode and per naive mode on the same questions; with ``guard``,
    also ``hybrid_guarded``: hybrid on the question as the input stage passes it on; with
    ``extra`` (name → (model id, query encoder)), ``hybrid@NAME`` and ``vector@NAME``."""
    from services.rag import passages
    from services.rag.access import scope_for
    from services.rag.retrieval import retrieve

    vectors = encode([q.text for q in questions])
    texts_asked = [q.text for q in questions]
    runs = [(mode, mode, texts_asked, vectors, None) for mode in modes]
    if guard is not None:
        texts = [guard(q.text) for q in questions]
        runs.append(("hybrid_guarded", "hybrid", texts, encode(texts), None))
    for name, (model_id, query_encode) in (extra or {}).items():
        model_vectors = query_encode(texts_asked)
        runs += [(f"{mode}@{name}", mode, texts_asked, model_vectors, model_id)
                 for mode in ("hybrid", "vector") if mode in modes]
    scope = scope_for("bench-reader", [], "public")
    ranks: dict[str, list[int | None]] = {}
    latencies: dict[str, list[float]] = {name: [] for name, *_ in runs}
    for name, mode, texts, mode_vectors, model_id in runs:
        for question, asked, vector in zip(questions, texts, mode_vectors, strict=True):
            started = time.perf_counter()
            got = retrieve(engine, vector, asked, scope, TOP, mode=mode, model_id=model_id,
                           unit="passage")
            latencies[name].append((time.perf_counter() - started) * 1000)
            ranks.setdefault(name, []).append(first_rank(question.doc_id,
                                                         passages.doc_ids(got)))
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
    if args.modes != "hybrid,lexical,vector,exact":
        parts.append(f"--modes {args.modes}")
    if args.encoders != "minilm":
        parts.append(f"--encoders {args.encoders}")
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
