"""Which embedding model the index serves, which models it is being built for, and the switch.

Tables (migration 0010):

* ``index_models``: one row per model the index knows; ``state`` is ``active`` (exactly one row:
  what queries use), ``building`` (a shadow re-index is filling it), ``ready`` (fully embedded,
  switchable) or ``retired`` (no longer written).
* ``chunk_embeddings(chunk_id, model_id, embedding)``: every chunk's vector per model, with one
  partial HNSW index per model (``WHERE model_id = '<id>'``), so each model's graph holds only
  vectors of its own space and a query for one model never walks the other's.
* ``index_switches``: the history of switches (from, to, who, when, chunks covered).

A query reads the active model once, encodes the question with it and passes the id to
retrieval, so a query is consistent even if a switch commits while it runs (the previous model's
vectors stay until that model is retired). Writers (the embedder, ``customllm index reindex``)
write every model that is not retired, so a document published during a shadow re-index is
searchable under both models.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

_MODEL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,199}$")
WRITTEN_STATES = ("active", "building", "ready")


class SwitchRefused(RuntimeError):
    """The switch was refused (coverage below 100%, unknown model, index not built)."""


def checked_model_id(model_id: str) -> str:
    """Model ids are inlined into SQL as literals (a partial index is only chosen when the
    planner sees the constant), so only a safe alphabet is accepted."""
    if not _MODEL_ID.match(model_id):
        raise ValueError(f"invalid model id {model_id!r}")
    return model_id


def model_literal(model_id: str) -> str:
    return "'" + checked_model_id(model_id) + "'"


def index_name(model_id: str) -> str:
    return "chunk_embeddings_hnsw_" + hashlib.sha256(model_id.encode()).hexdigest()[:12]


def create_index_sql(model_id: str, concurrently: bool = False) -> str:
    return (f"CREATE INDEX {'CONCURRENTLY ' if concurrently else ''}IF NOT EXISTS "
            f"{index_name(model_id)} ON chunk_embeddings USING hnsw "
            f"(embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64) "
            f"WHERE model_id = {model_literal(model_id)}")


def active_model(conn: Connection) -> str | None:
    return conn.execute(text(
        "SELECT model_id FROM index_models WHERE state = 'active'")).scalar()


def written_models(conn: Connection) -> list[str]:
    """Models new chunks must be embedded for, the active one first."""
    return list(written_model_paths(conn))


def written_model_paths(conn: Connection) -> dict[str, str | None]:
    """Models new chunks must be embedded for (active first) → local path (None: shipped)."""
    rows = conn.execute(text(
        "SELECT model_id, model_path FROM index_models WHERE state = ANY(:states) "
        "ORDER BY state = 'active' DESC, model_id"), {"states": list(WRITTEN_STATES)})
    return {row[0]: row[1] for row in rows}


def register(conn: Connection, model_id: str, dim: int = 384, path: str | None = None) -> str:
    """Register ``model_id`` for a shadow build (a retired model comes back as building).
    Returns its state after the call."""
    checked_model_id(model_id)
    conn.execute(text("""
        INSERT INTO index_models (model_id, dim, state, reindex_started_at, model_path)
        VALUES (:m, :dim, 'building', now(), :path)
        ON CONFLICT (model_id) DO UPDATE SET
            model_path = coalesce(EXCLUDED.model_path, index_models.model_path),
            state = CASE WHEN index_models.state = 'retired' THEN 'building'
                         ELSE index_models.state END,
            reindex_started_at = CASE WHEN index_models.state = 'active'
                                      THEN index_models.reindex_started_at ELSE now() END
    """), {"m": model_id, "dim": dim, "path": path})
    return str(conn.execute(text("SELECT state FROM index_models WHERE model_id = :m"),
                            {"m": model_id}).scalar_one())


def ensure_index(engine: Engine, model_id: str) -> None:
    """Build the model's partial HNSW index without blocking writers (CONCURRENTLY), and
    rebuild it if an earlier concurrent build was interrupted (left invalid)."""
    name = index_name(model_id)
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        valid = conn.execute(text(
            "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE c.relname = :name"), {"name": name}).scalar()
        if valid is False:
            conn.execute(text(f"DROP INDEX CONCURRENTLY IF EXISTS {name}"))
        conn.execute(text(create_index_sql(model_id, concurrently=True)))


def index_valid(conn: Connection, model_id: str) -> bool:
    return bool(conn.execute(text(
        "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "WHERE c.relname = :name"), {"name": index_name(model_id)}).scalar())


@dataclass(frozen=True)
class Coverage:
    model_id: str
    state: str
    embedded: int
    total: int
    index_ready: bool
    activated_at: object | None = None
    activated_by: str | None = None

    @property
    def fraction(self) -> float:
        return 1.0 if self.total == 0 else self.embedded / self.total

    @property
    def complete(self) -> bool:
        return self.embedded >= self.total


def coverage(conn: Connection) -> list[Coverage]:
    """Per registered model: chunks with a vector for it, out of all chunks."""
    total = int(conn.execute(text("SELECT count(*) FROM chunks")).scalar_one())
    rows = conn.execute(text("""
        SELECT m.model_id, m.state, m.activated_at, m.activated_by,
               (SELECT count(*) FROM chunk_embeddings e WHERE e.model_id = m.model_id)
        FROM index_models m ORDER BY m.state = 'active' DESC, m.model_id
    """)).all()
    return [Coverage(r[0], r[1], int(r[4]), total, index_valid(conn, r[0]), r[2], r[3])
            for r in rows]


def missing_chunks(conn: Connection, model_id: str, limit: int,
                   after: str = "") -> list[tuple[str, str, str]]:
    """(chunk_id, content_hash, text) of chunks without a vector for ``model_id``, in chunk-id
    order from ``after``: a re-index walks them in batches and a crashed one simply resumes."""
    rows = conn.execute(text("""
        SELECT c.chunk_id, c.content_hash, c.text FROM chunks c
        WHERE c.chunk_id > :after AND NOT EXISTS (
            SELECT 1 FROM chunk_embeddings e
            WHERE e.chunk_id = c.chunk_id AND e.model_id = :m)
        ORDER BY c.chunk_id LIMIT :n
    """), {"m": model_id, "n": limit, "after": after}).all()
    return [(r[0], r[1], r[2]) for r in rows]


def store_vectors(conn: Connection, model_id: str,
                  rows: Iterable[tuple[str, np.ndarray]]) -> int:
    """Insert (chunk_id, vector) for ``model_id``; chunks deleted meanwhile are skipped and
    vectors already there are kept (idempotent, so a replay or a resumed run is harmless)."""
    params = [{"m": model_id, "c": chunk_id, "v": np.asarray(v, dtype=np.float32)}
              for chunk_id, v in rows]
    if not params:
        return 0
    result = conn.execute(text("""
        INSERT INTO chunk_embeddings (chunk_id, model_id, embedding)
        SELECT c.chunk_id, :m, :v FROM chunks c WHERE c.chunk_id = :c
        ON CONFLICT (chunk_id, model_id) DO NOTHING
    """), params)
    return max(int(result.rowcount or 0), 0)


def finish_build(conn: Connection, model_id: str) -> None:
    conn.execute(text(
        "UPDATE index_models SET state = 'ready', reindex_finished_at = now() "
        "WHERE model_id = :m AND state = 'building'"), {"m": model_id})


@dataclass(frozen=True)
class SwitchResult:
    previous: str | None
    active: str
    chunks: int


def switch(conn: Connection, model_id: str, by: str) -> SwitchResult:
    """Make ``model_id`` the active model, in the caller's transaction.

    ``chunks`` is locked in SHARE mode first, so no chunk can be written between the coverage
    check and the commit (writers wait a moment; readers are not blocked), which makes the
    100% check exact. Refuses (``SwitchRefused``) unless every chunk has a vector for the model
    and its index is built."""
    checked_model_id(model_id)
    conn.execute(text("LOCK TABLE chunks IN SHARE MODE"))
    state = conn.execute(text("SELECT state FROM index_models WHERE model_id = :m FOR UPDATE"),
                         {"m": model_id}).scalar()
    if state is None:
        raise SwitchRefused(f"model {model_id} is not registered: run customllm index "
                            f"reindex --model {model_id} first")
    if state == "retired":
        raise SwitchRefused(f"model {model_id} is retired: re-index it first")
    total = int(conn.execute(text("SELECT count(*) FROM chunks")).scalar_one())
    embedded = int(conn.execute(text(
        "SELECT count(*) FROM chunk_embeddings WHERE model_id = :m"), {"m": model_id}
    ).scalar_one())
    if embedded < total:
        raise SwitchRefused(
            f"model {model_id} covers {embedded} of {total} chunks "
            f"({100.0 * embedded / max(total, 1):.1f}%): the switch needs 100%")
    if not index_valid(conn, model_id):
        raise SwitchRefused(f"the HNSW index of {model_id} is not built")
    previous = active_model(conn)
    if previous == model_id:
        return SwitchResult(previous, model_id, total)
    conn.execute(text("UPDATE index_models SET state = 'ready' WHERE state = 'active'"))
    conn.execute(text(
        "UPDATE index_models SET state = 'active', activated_at = now(), activated_by = :by, "
        "reindex_finished_at = coalesce(reindex_finished_at, now()) WHERE model_id = :m"),
        {"m": model_id, "by": by})
    conn.execute(text(
        "INSERT INTO index_switches (from_model, to_model, switched_by, chunks) "
        "VALUES (:f, :t, :by, :n)"), {"f": previous, "t": model_id, "by": by, "n": total})
    return SwitchResult(previous, model_id, total)


def retire(conn: Connection, model_id: str) -> int:
    """Stop writing ``model_id`` and drop its vectors (never the active model)."""
    state = conn.execute(text("SELECT state FROM index_models WHERE model_id = :m FOR UPDATE"),
                         {"m": model_id}).scalar()
    if state is None:
        raise SwitchRefused(f"model {model_id} is not registered")
    if state == "active":
        raise SwitchRefused(f"model {model_id} is active: switch to another model first")
    conn.execute(text("UPDATE index_models SET state = 'retired' WHERE model_id = :m"),
                 {"m": model_id})
    return int(conn.execute(text("DELETE FROM chunk_embeddings WHERE model_id = :m"),
                            {"m": model_id}).rowcount or 0)


def switches(conn: Connection, limit: int = 10) -> Sequence:
    return conn.execute(text(
        "SELECT from_model, to_model, switched_by, switched_at, chunks FROM index_switches "
        "ORDER BY switch_id DESC LIMIT :n"), {"n": limit}).all()


class ActiveModel:
    """The active model id, re-read at most every ``ttl_s`` (a switch is picked up within that
    time, no restart); ``fallback`` when the registry is empty or unreadable."""

    def __init__(self, engine: Engine, fallback: str, ttl_s: float = 1.0) -> None:
        self._engine, self._fallback, self._ttl = engine, fallback, ttl_s
        self._value: str | None = None
        self._read_at = 0.0
        self._lock = threading.Lock()

    def get(self) -> str:
        now = time.monotonic()
        with self._lock:
            if self._value is not None and now - self._read_at < self._ttl:
                return self._value
        with self._engine.connect() as conn:
            found = active_model(conn)
        with self._lock:
            self._value, self._read_at = found or self._fallback, time.monotonic()
            return self._value

    def invalidate(self) -> None:
        with self._lock:
            self._value = None


def adopt_when_empty(engine: Engine, model_id: str, by: str = "configuration") -> str | None:
    """Make ``model_id`` the active model if the index holds no chunk at all; the previous
    active model (which then has no vectors) is retired. Returns the previous model when it
    switched, None when nothing changed.

    Why: migration 0010 registered the encoder configured *when it ran* (then the torch MiniLM).
    An index with chunks keeps its model until an operator re-indexes and switches (its
    vectors would not match another model's queries), but an empty one has nothing to keep
    consistent, so a fresh install, or one whose configuration changed before anything was
    published, serves the configured encoder instead of whatever the first migration found.
    Concurrent callers are serialized by the table lock; a chunk written meanwhile makes the
    switch refuse (coverage below 100 %), and nothing changes."""
    checked_model_id(model_id)
    with engine.begin() as conn:
        conn.execute(text("LOCK TABLE index_models IN SHARE ROW EXCLUSIVE MODE"))
        previous = active_model(conn)
        if previous == model_id or conn.execute(text("SELECT EXISTS (SELECT 1 FROM chunks)")
                                                ).scalar_one():
            return None
        register(conn, model_id)
        finish_build(conn, model_id)
    ensure_index(engine, model_id)
    try:
        with engine.begin() as conn:
            result = switch(conn, model_id, by)
            if result.previous and result.previous != model_id:
                retire(conn, result.previous)
    except SwitchRefused:
        return None
    return result.previous
