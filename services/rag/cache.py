"""Exact and semantic answer cache in Postgres.

Scoping: the ``context_key`` hashes everything an answer depends on besides the question (the
principal's access scope, adapter, template version, model, retrieval options), so two users
who may see different documents never share an entry. Exact hits match the normalized question;
semantic hits match a question embedding above a similarity threshold within the same context.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import text
from sqlalchemy.engine import Engine

from services.common.events import RagReply


@dataclass(frozen=True)
class CacheHit:
    reply: RagReply
    kind: str  # exact | semantic
    similarity: float


def normalize_question(question: str) -> str:
    return re.sub(r"\s+", " ", question).strip().lower()


def context_key(parts: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def cache_key(context: str, question: str) -> str:
    return hashlib.sha256(f"{context}\x00{normalize_question(question)}".encode()).hexdigest()


def lookup(engine: Engine, context: str, question: str, vector: np.ndarray,
           threshold: float) -> CacheHit | None:
    with engine.begin() as conn:
        row = conn.execute(text(
            "SELECT cache_key, reply, doc_versions, 1.0 AS similarity FROM answer_cache "
            "WHERE cache_key = :key AND expires_at > now()"),
            {"key": cache_key(context, question)}).first()
        kind = "exact"
        if row is None:
            row = conn.execute(text(
                "SELECT cache_key, reply, doc_versions, "
                "1 - (question_embedding <=> :vector) AS similarity FROM answer_cache "
                "WHERE context_key = :context AND expires_at > now() "
                "ORDER BY question_embedding <=> :vector LIMIT 1"),
                {"context": context, "vector": vector}).first()
            kind = "semantic"
        if row is None or row.similarity < threshold:
            return None
        if not _still_current(conn, row.doc_versions):
            conn.execute(text("DELETE FROM answer_cache WHERE cache_key = :k"),
                         {"k": row.cache_key})
            return None
        conn.execute(text("UPDATE answer_cache SET hits = hits + 1 WHERE cache_key = :k"),
                     {"k": row.cache_key})
    return CacheHit(RagReply.model_validate(row.reply), kind, float(row.similarity))


def _still_current(conn: Any, versions: dict[str, int]) -> bool:
    """The answer was built from these document versions; any change makes it stale."""
    if not versions:
        # Built from no document ("don't know"): invalidate_document drops it on any index change.
        return True
    rows = conn.execute(text("SELECT doc_id, version, deleted FROM documents "
                             "WHERE doc_id = ANY(:ids)"), {"ids": list(versions)}).all()
    current = {row.doc_id: row.version for row in rows if not row.deleted}
    return current == {k: int(v) for k, v in versions.items()}


def store(engine: Engine, context: str, question: str, vector: np.ndarray, reply: RagReply,
          doc_versions: dict[str, int], ttl_s: float) -> None:
    expires = datetime.now(UTC) + timedelta(seconds=ttl_s)
    with engine.begin() as conn:
        conn.execute(text("""
            INSERT INTO answer_cache (cache_key, context_key, question, question_embedding,
                                      reply, doc_versions, doc_ids, expires_at)
            VALUES (:key, :context, :question, :vector, CAST(:reply AS jsonb),
                    CAST(:versions AS jsonb), :doc_ids, :expires)
            ON CONFLICT (cache_key) DO UPDATE SET reply = EXCLUDED.reply,
                doc_versions = EXCLUDED.doc_versions, doc_ids = EXCLUDED.doc_ids,
                expires_at = EXCLUDED.expires_at, created_at = now()
        """), {"key": cache_key(context, question), "context": context, "question": question,
               "vector": vector, "reply": reply.model_dump_json(),
               "versions": json.dumps(doc_versions), "doc_ids": sorted(doc_versions),
               "expires": expires})


def invalidate_document(engine: Engine, doc_id: str) -> int:
    """Driven by docs.status: drop answers built from the document, and "don't know" answers,
    which a newly indexed document may now be able to answer."""
    with engine.begin() as conn:
        return conn.execute(text(
            "DELETE FROM answer_cache WHERE :doc = ANY(doc_ids) OR cardinality(doc_ids) = 0"),
            {"doc": doc_id}).rowcount


def document_versions(engine: Engine, doc_ids: list[str]) -> dict[str, int]:
    if not doc_ids:
        return {}
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT doc_id, version FROM documents WHERE doc_id = ANY(:ids)"),
                            {"ids": doc_ids}).all()
    return {row.doc_id: int(row.version) for row in rows}
