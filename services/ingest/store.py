"""The two reads ingest needs: the stored version (to skip stale events early) and which chunk
hashes already have an embedding (so only new text is sent to be embedded)."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import text
from sqlalchemy.engine import Engine


def stored_version(engine: Engine, doc_id: str) -> int | None:
    with engine.connect() as conn:
        row = conn.execute(
            text("SELECT version FROM documents WHERE doc_id = :doc_id"), {"doc_id": doc_id}
        ).first()
    return None if row is None else int(row[0])


def cached_hashes(engine: Engine, hashes: Iterable[str], model_id: str) -> set[str]:
    wanted = list(set(hashes))
    if not wanted:
        return set()
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT content_hash FROM embedding_cache "
                 "WHERE model_id = :model AND content_hash = ANY(:hashes)"),
            {"model": model_id, "hashes": wanted},
        )
        return {row[0] for row in rows}


def count_stale(engine: Engine, doc_id: str, version: int) -> None:
    """Stale events are counted per document so operators can see out-of-order producers."""
    with engine.begin() as conn:
        conn.execute(
            text("""
                INSERT INTO ingestion_status (doc_id, last_version, state, stale_events)
                VALUES (:doc_id, :version, 'stale_ignored', 1)
                ON CONFLICT (doc_id) DO UPDATE
                SET stale_events = ingestion_status.stale_events + 1, updated_at = now()
            """),
            {"doc_id": doc_id, "version": version},
        )


def record_failure(engine: Engine, doc_id: str, version: int | None, reason: str) -> None:
    """An event that could not be ingested (DLQ, or a PDF with no text layer) leaves a 'failed'
    row with the reason, so `customllm docs` and `customllm reconcile` can see it. The stored
    document itself is untouched, and a failure never overwrites the status of a newer
    version."""
    with engine.begin() as conn:
        conn.execute(
            text("""
                INSERT INTO ingestion_status (doc_id, last_version, state, error)
                VALUES (:doc_id, :version, 'failed', :reason)
                ON CONFLICT (doc_id) DO UPDATE
                SET last_version = EXCLUDED.last_version, state = 'failed',
                    error = EXCLUDED.error, updated_at = now()
                WHERE ingestion_status.last_version IS NULL
                   OR EXCLUDED.last_version IS NULL
                   OR ingestion_status.last_version <= EXCLUDED.last_version
            """),
            {"doc_id": doc_id, "version": version, "reason": reason[:2000]},
        )
