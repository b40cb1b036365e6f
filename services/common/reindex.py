"""The shadow re-index: give every current chunk a vector for another model while the active
one keeps serving.

Crash-safe and resumable by construction: progress *is* the ``chunk_embeddings`` table. Each
batch (encode, then one transaction that caches the vectors by content hash and stores them per
chunk) either commits whole or not at all, and a restarted run asks again which chunks have no
vector for the model. Passes repeat until none is missing, so chunks written behind the cursor
meanwhile (a document published while the run started) are picked up too; after the run the
embedder writes the model for every new chunk because it is registered.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.engine import Engine

from services.common import index_registry as registry
from services.common.db import vector_array
from services.common.embeddings import Embedder


@dataclass
class ReindexReport:
    model_id: str
    embedded: int = 0  # encoded by this run
    reused: int = 0  # taken from the embedding cache
    passes: int = 0
    state: str = ""


def reindex(engine: Engine, encoder: Embedder, batch_size: int = 64,
            path: str | None = None,
            on_progress: Callable[[int, int], None] | None = None,
            after_batch: Callable[[int], None] | None = None) -> ReindexReport:
    """``on_progress(done, total)`` after every batch; ``after_batch(n)`` is a test hook (a
    crash injected there leaves a consistent, resumable state)."""
    model_id = encoder.model_id
    with engine.begin() as conn:
        state = registry.register(conn, model_id, encoder.dim, path)
    registry.ensure_index(engine, model_id)
    report = ReindexReport(model_id, state=state)
    batches = 0
    while True:
        report.passes += 1
        cursor, found_any = "", False
        while True:
            with engine.connect() as conn:
                rows = registry.missing_chunks(conn, model_id, batch_size, cursor)
                total = int(conn.execute(text("SELECT count(*) FROM chunks")).scalar_one())
                done = int(conn.execute(text(
                    "SELECT count(*) FROM chunk_embeddings WHERE model_id = :m"),
                    {"m": model_id}).scalar_one())
            if on_progress:
                on_progress(done, total)
            if not rows:
                break
            found_any = True
            cursor = rows[-1][0]
            _embed_batch(engine, encoder, rows, report)
            batches += 1
            if after_batch:
                after_batch(batches)
        if not found_any:
            break
    with engine.begin() as conn:
        registry.finish_build(conn, model_id)
        report.state = conn.execute(text(
            "SELECT state FROM index_models WHERE model_id = :m"), {"m": model_id}).scalar_one()
    return report


def _embed_batch(engine: Engine, encoder: Embedder, rows: list[tuple[str, str, str]],
                 report: ReindexReport) -> None:
    model_id = encoder.model_id
    hashes = list({h for _, h, _ in rows})
    with engine.connect() as conn:
        cached = {r[0]: vector_array(r[1]) for r in conn.execute(text(
            "SELECT content_hash, embedding FROM embedding_cache "
            "WHERE model_id = :m AND content_hash = ANY(:h)"), {"m": model_id, "h": hashes})}
    todo: dict[str, str] = {}
    for _, content_hash, body in rows:
        if content_hash not in cached:
            todo.setdefault(content_hash, body)
    fresh = dict(zip(todo, encoder.encode_passages(list(todo.values())), strict=True)) \
        if todo else {}
    vectors = {**cached, **fresh}
    with engine.begin() as conn:
        if fresh:
            conn.execute(text(
                "INSERT INTO embedding_cache (content_hash, model_id, embedding) "
                "VALUES (:h, :m, :v) ON CONFLICT DO NOTHING"),
                [{"h": h, "m": model_id, "v": v} for h, v in fresh.items()])
        registry.store_vectors(conn, model_id, [(cid, vectors[h]) for cid, h, _ in rows])
    report.embedded += len(fresh)
    report.reused += len(rows) - sum(1 for _, h, _ in rows if h in fresh)

