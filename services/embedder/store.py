"""Embedding cache reads/writes and the atomic swap of a document's chunk set.

The swap runs in one transaction under a row lock on the document, so a reader sees either the
old chunk set or the new one, never a mix; the version check inside that transaction is the
authoritative one (ingest's check is only an early exit), so replays and duplicates are no-ops.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from sqlalchemy import text
from sqlalchemy.engine import Connection

from services.common.db import vector_array
from services.common.events import ChunkWork


@dataclass(frozen=True)
class ApplyResult:
    state: str  # indexed | deleted | stale_ignored | duplicate | failed
    chunks_total: int = 0
    chunks_inserted: int = 0
    chunks_removed: int = 0
    stored_version: int | None = None
    reason: str | None = None


def cached_embeddings(conn: Connection, hashes: Iterable[str], model_id: str
                      ) -> dict[str, np.ndarray]:
    wanted = list(set(hashes))
    if not wanted:
        return {}
    rows = conn.execute(
        text("SELECT content_hash, embedding FROM embedding_cache "
             "WHERE model_id = :model AND content_hash = ANY(:hashes)"),
        {"model": model_id, "hashes": wanted},
    )
    return {row[0]: vector_array(row[1]) for row in rows}


def cache_embeddings(conn: Connection, vectors: Mapping[str, np.ndarray], model_id: str) -> None:
    if not vectors:
        return
    conn.execute(
        text("INSERT INTO embedding_cache (content_hash, model_id, embedding) "
             "VALUES (:hash, :model, :embedding) ON CONFLICT DO NOTHING"),
        [{"hash": h, "model": model_id, "embedding": v} for h, v in vectors.items()],
    )


def _lock_document(conn: Connection, doc_id: str) -> tuple[int, bool, str | None] | None:
    row = conn.execute(
        text("SELECT version, deleted, content_hash FROM documents WHERE doc_id = :d FOR UPDATE"),
        {"d": doc_id},
    ).first()
    return None if row is None else (int(row[0]), bool(row[1]), row[2])


def apply_work(conn: Connection, work: ChunkWork, vectors: Mapping[str, np.ndarray],
               model_id: str) -> ApplyResult:
    """Apply one document version inside the caller's transaction."""
    stored = _lock_document(conn, work.doc_id)
    if stored is not None and work.version is not None and work.version <= stored[0]:
        duplicate = (work.version == stored[0] and work.op == "upsert" and not stored[1]
                     and work.content_hash == stored[2])
        return ApplyResult("duplicate" if duplicate else "stale_ignored", stored_version=stored[0])
    if work.op == "delete":
        return _delete(conn, work, stored)
    if work.op == "acl":
        return _relabel(conn, work, stored)
    if work.op == "failed":  # ingest could not read this version: recorded, nothing touched
        return ApplyResult("failed", stored_version=stored[0] if stored else None,
                           reason=work.reason or "the version could not be ingested")
    return _upsert(conn, work, vectors, model_id)


def _relabel(conn: Connection, work: ChunkWork,
             stored: tuple[int, bool, str | None] | None) -> ApplyResult:
    """Permission-only change: one UPDATE of the document row, chunks untouched. Retrieval
    filters on the document's labels at query time, so the next query already obeys them, and
    the version bump makes answers cached from the old labels stale."""
    if stored is None or stored[1]:
        return ApplyResult("failed", stored_version=stored[0] if stored else None,
                           reason="acl change for a document that is not indexed")
    doc = work.document
    assert doc is not None, "schema requires a document on acl changes"
    conn.execute(
        text("""
            UPDATE documents SET version = :v, acl = :acl, privacy_class = :privacy_class,
                   license = :license, updated_at = now()
            WHERE doc_id = :d
        """),
        {"d": work.doc_id, "v": work.version, "acl": list(doc.acl),
         "privacy_class": doc.privacy_class, "license": doc.license},
    )
    total = conn.execute(text("SELECT count(*) FROM chunks WHERE doc_id = :d"),
                         {"d": work.doc_id}).scalar_one()
    return ApplyResult("indexed", chunks_total=int(total), stored_version=stored[0])


def _delete(conn: Connection, work: ChunkWork,
            stored: tuple[int, bool, str | None] | None) -> ApplyResult:
    if stored is None and work.version is None:
        return ApplyResult("deleted")
    removed = conn.execute(
        text("DELETE FROM chunks WHERE doc_id = :d"), {"d": work.doc_id}).rowcount
    # The row stays as a tombstone carrying the delete's version, so an older upsert that
    # arrives later is still recognised as stale.
    version = work.version if work.version is not None else (stored[0] if stored else 0)
    conn.execute(
        text("""
            INSERT INTO documents (doc_id, version, deleted, chunk_count)
            VALUES (:d, :v, true, 0)
            ON CONFLICT (doc_id) DO UPDATE
            SET version = :v, deleted = true, chunk_count = 0, updated_at = now()
        """),
        {"d": work.doc_id, "v": version},
    )
    return ApplyResult("deleted", chunks_removed=removed)


def _upsert(conn: Connection, work: ChunkWork, vectors: Mapping[str, np.ndarray],
            model_id: str) -> ApplyResult:
    doc = work.document
    assert doc is not None, "schema requires a document on upserts"
    conn.execute(
        text("""
            INSERT INTO documents (doc_id, version, content_hash, content_type, title, source,
                                   uri, license, privacy_class, acl, lineage, metadata, deleted,
                                   chunk_count)
            VALUES (:doc_id, :version, :content_hash, :content_type, :title, :source, :uri,
                    :license, :privacy_class, :acl, CAST(:lineage AS jsonb),
                    CAST(:metadata AS jsonb), false, :chunk_count)
            ON CONFLICT (doc_id) DO UPDATE SET
                version = EXCLUDED.version, content_hash = EXCLUDED.content_hash,
                content_type = EXCLUDED.content_type, title = EXCLUDED.title,
                source = EXCLUDED.source, uri = EXCLUDED.uri, license = EXCLUDED.license,
                privacy_class = EXCLUDED.privacy_class, acl = EXCLUDED.acl,
                lineage = EXCLUDED.lineage, metadata = EXCLUDED.metadata, deleted = false,
                chunk_count = EXCLUDED.chunk_count, updated_at = now()
        """),
        {"doc_id": work.doc_id, "version": work.version, "content_hash": work.content_hash,
         "content_type": doc.content_type, "title": doc.title, "source": doc.source,
         "uri": doc.uri, "license": doc.license, "privacy_class": doc.privacy_class,
         "acl": list(doc.acl), "lineage": _json(doc.lineage), "metadata": _json(doc.metadata),
         "chunk_count": len(work.chunks)},
    )
    new_ids = [chunk.chunk_id for chunk in work.chunks]
    removed = conn.execute(
        text("DELETE FROM chunks WHERE doc_id = :d AND NOT (chunk_id = ANY(:ids))"),
        {"d": work.doc_id, "ids": new_ids},
    ).rowcount
    existing = {row[0]: (row[1], row[2], row[3]) for row in conn.execute(
        text("SELECT chunk_id, ordinal, page_start, page_end FROM chunks WHERE doc_id = :d"),
        {"d": work.doc_id},
    )}
    fresh = [c for c in work.chunks if c.chunk_id not in existing]
    if fresh:
        conn.execute(
            text("""
                INSERT INTO chunks (chunk_id, doc_id, ordinal, content_hash, text, word_count,
                                    heading_path, model_id, embedding, injection_score,
                                    page_start, page_end)
                VALUES (:chunk_id, :doc_id, :ordinal, :content_hash, :text, :word_count,
                        :heading_path, :model_id, :embedding, :injection_score,
                        :page_start, :page_end)
            """),
            [{"chunk_id": c.chunk_id, "doc_id": work.doc_id, "ordinal": c.ordinal,
              "content_hash": c.content_hash, "text": c.text, "word_count": c.word_count,
              "heading_path": list(c.heading_path), "model_id": model_id,
              "embedding": vectors[c.content_hash], "injection_score": c.injection_score,
              "page_start": c.page_start, "page_end": c.page_end}
             for c in fresh],
        )
    rescored = [c for c in work.chunks
                if c.chunk_id in existing and c.injection_score is not None]
    if rescored:
        # Kept chunks take the new scan's score (rules improve; chunks stored before the scan
        # existed have NULL); rows whose score is unchanged are not written.
        conn.execute(
            text("""
                UPDATE chunks SET injection_score = v.score
                FROM unnest(CAST(:ids AS text[]), CAST(:scores AS real[])) AS v(id, score)
                WHERE chunks.chunk_id = v.id
                  AND chunks.injection_score IS DISTINCT FROM v.score
            """),
            {"ids": [c.chunk_id for c in rescored],
             "scores": [c.injection_score for c in rescored]},
        )
    moved = [c for c in work.chunks if c.chunk_id in existing
             and existing[c.chunk_id] != (c.ordinal, c.page_start, c.page_end)]
    if moved:
        # Only the position changes (ordinal, and pages when a page was inserted before the
        # chunk): no indexed column, so Postgres can update in place (HOT).
        conn.execute(
            text("UPDATE chunks SET ordinal = :ordinal, page_start = :page_start, "
                 "page_end = :page_end WHERE chunk_id = :chunk_id"),
            [{"chunk_id": c.chunk_id, "ordinal": c.ordinal, "page_start": c.page_start,
              "page_end": c.page_end} for c in moved],
        )
    return ApplyResult("indexed", chunks_total=len(work.chunks), chunks_inserted=len(fresh),
                       chunks_removed=removed)


def record_status(conn: Connection, work: ChunkWork, result: ApplyResult, embedded: int,
                  lag_ms: float | None) -> None:
    """The per-document status row; written in the same transaction as the swap."""
    stale = result.state in ("stale_ignored", "duplicate")
    conn.execute(
        text("""
            INSERT INTO ingestion_status (doc_id, last_version, state, chunks_total,
                chunks_embedded, chunks_reused, chunks_removed, stale_events, event_time,
                indexed_at, lag_ms, error)
            VALUES (:d, :v, :state, :total, :embedded, :reused, :removed, :stale, :event_time,
                    :indexed_at, :lag, :error)
            ON CONFLICT (doc_id) DO UPDATE SET
                last_version = CASE WHEN :is_stale THEN ingestion_status.last_version ELSE :v END,
                state = CASE WHEN :is_stale THEN ingestion_status.state ELSE :state END,
                chunks_total = CASE WHEN :is_stale THEN ingestion_status.chunks_total
                                    ELSE :total END,
                chunks_embedded = CASE WHEN :is_stale THEN ingestion_status.chunks_embedded
                                       ELSE :embedded END,
                chunks_reused = CASE WHEN :is_stale THEN ingestion_status.chunks_reused
                                     ELSE :reused END,
                chunks_removed = CASE WHEN :is_stale THEN ingestion_status.chunks_removed
                                      ELSE :removed END,
                stale_events = ingestion_status.stale_events + :stale,
                event_time = CASE WHEN :is_stale THEN ingestion_status.event_time
                                  ELSE :event_time END,
                indexed_at = CASE WHEN :is_stale THEN ingestion_status.indexed_at
                                  ELSE :indexed_at END,
                lag_ms = CASE WHEN :is_stale THEN ingestion_status.lag_ms ELSE :lag END,
                error = CASE WHEN :is_stale THEN ingestion_status.error ELSE :error END,
                updated_at = now()
        """),
        {"d": work.doc_id, "v": work.version, "state": result.state,
         "total": result.chunks_total, "embedded": embedded,
         "reused": max(result.chunks_total - embedded, 0), "removed": result.chunks_removed,
         "stale": 1 if stale else 0, "is_stale": stale, "event_time": work.event_time,
         "indexed_at": datetime.now(UTC), "lag": lag_ms,
         "error": result.reason if result.state == "failed" else None},
    )


def _json(value: object) -> str:
    import json

    return json.dumps(value, sort_keys=True)


def store_model_vectors(conn: Connection, work: ChunkWork,
                        vectors_by_model: Mapping[str, Mapping[str, np.ndarray]]) -> int:
    """Every chunk of an indexed upsert gets a vector for every model being written (the active
    one and any shadow re-index), in the swap's transaction: a document published during a
    re-index is searchable under both models as soon as it is searchable at all."""
    if work.op != "upsert":
        return 0
    from services.common.index_registry import store_vectors

    written = 0
    for model_id, vectors in vectors_by_model.items():
        written += store_vectors(conn, model_id, [(c.chunk_id, vectors[c.content_hash])
                                                  for c in work.chunks
                                                  if c.content_hash in vectors])
    return written
