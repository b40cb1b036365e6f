"""The known-attack corpus held in memory by each process that screens, kept current by the
notifications Postgres sends when the table changes.

Why: the corpus is small (60 seeds plus the attacks operators confirm), and searching it in SQL
cost the input stage ~2.5 ms a question (a round trip, the pool's ping, every view's vector
bound as a parameter): a tenth of its budget. A matrix product over a few hundred rows costs a
few hundredths of a millisecond, and it is exact (pgvector's HNSW index is approximate, and
filtered on the encoder after the fact).

Freshness is the table's, not a timer's: a trigger (migration 0016) notifies ``CHANNEL`` at
the commit of every statement that changes the table, from any process (``customllm
guardrails attacks add``, another replica re-embedding rows). Each process listens on its own
connection, subscribed *before* it reads the rows, so a change committed after the read is
always announced; a check that finds a notification waiting (a poll of the socket, no round
trip) reads the table again. Postgres delivers a notification just after the commit, not with
it: a check that starts in that moment still reads the copy from before, as it would had it
started before the commit (the SQL search this replaces saw a commit at once). Once the
committing call returned, the next poll found the notification in 187 of 200 trials here
(13 µs p50, 8 ms at most on a loaded machine). Where no listening connection can be had,
every check reads the table: slower, never stale.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import numpy as np
import psycopg
from sqlalchemy import text as sql
from sqlalchemy.engine import Engine

from services.common.db import vector_array
from services.common.logs import log

logger = logging.getLogger(__name__)

CHANNEL = "guardrail_attacks"


@dataclass(frozen=True)
class Snapshot:
    """Rows of one vector space; ``unit`` holds each row's vector scaled to length 1 (a zero
    vector stays zero: it is close to nothing, as pgvector's cosine distance has it)."""

    attack_ids: tuple[int, ...]
    texts: tuple[str, ...]
    sources: tuple[str, ...]
    unit: np.ndarray

    def similarities(self, vectors: np.ndarray) -> np.ndarray:
        """Cosine similarity of each query vector (rows) to each attack (columns)."""
        queries = np.asarray(vectors, dtype=np.float32)
        norms = np.linalg.norm(queries, axis=1, keepdims=True)
        return (queries / np.where(norms > 0, norms, 1.0)) @ self.unit.T


def _read(engine: Engine, space: str | None) -> Snapshot:
    only = "WHERE encoder = :e " if space is not None else ""
    with engine.connect() as conn:
        rows = conn.execute(sql("SELECT attack_id, text, source, embedding FROM "
                                f"guardrail_attacks {only}ORDER BY attack_id"),
                            {"e": space}).all()
    matrix = np.array([vector_array(r[3]) for r in rows], dtype=np.float32)
    matrix = matrix.reshape(len(rows), -1)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return Snapshot(tuple(int(r[0]) for r in rows), tuple(r[1] for r in rows),
                    tuple(r[2] for r in rows), matrix / np.where(norms > 0, norms, 1.0))


@dataclass
class _Listener:
    """A connection of its own (outside the pool, which hands connections to others)
    subscribed to ``CHANNEL``. ``lost``: the server said it is ending the session (a FATAL
    message: a restart, an administrator's termination). libpq reads that message as a
    notice, and the socket's end only on the read after it, so without this the first check
    after the loss would find no notification and keep a copy that may be stale."""

    conn: psycopg.Connection
    lost: bool = False

    def announced(self) -> bool:
        """Whether a change was announced since the last call (a lost connection counts as
        one: what it missed is unknown)."""
        try:
            announced = any(True for _ in self.conn.notifies(timeout=0))
        except psycopg.Error:
            self.lost = True
        if self.lost:
            self.conn.close()
            return True
        return announced

    def _on_notice(self, diagnostic: psycopg.errors.Diagnostic) -> None:
        if diagnostic.severity_nonlocalized in ("FATAL", "PANIC"):
            self.lost = True


_warned: set[str] = set()


def _listen(engine: Engine) -> _Listener | None:
    """None when no listening connection can be had (the caller then reads every time; said
    once per database, not at every check)."""
    url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    conn = None
    try:
        conn = psycopg.connect(url, autocommit=True)
        listener = _Listener(conn)
        conn.add_notice_handler(listener._on_notice)
        conn.execute(f"LISTEN {CHANNEL}")
        return listener
    except psycopg.Error as exc:
        if conn is not None:
            conn.close()
        if url not in _warned:
            _warned.add(url)
            log(logger, logging.WARNING, "attack corpus: reading the table at every check",
                reason=f"cannot listen for its changes: {exc}")
        return None


@dataclass
class _Entry:
    listener: _Listener | None
    snapshot: Snapshot


_entries: dict[tuple[str, str | None], _Entry] = {}
_lock = threading.Lock()


def current(engine: Engine, space: str | None) -> Snapshot:
    """The corpus rows of vector ``space`` (None: every row), as committed in the table."""
    key = (engine.url.render_as_string(hide_password=False), space)
    with _lock:
        entry = _entries.get(key)
        listener = entry.listener if entry is not None else None
        if listener is not None and not listener.announced():
            return entry.snapshot
        if listener is None or listener.lost:
            listener = _listen(engine)  # subscribed before the read below
        _entries[key] = _Entry(listener, _read(engine, space))
        return _entries[key].snapshot


def forget() -> None:
    """Drop every snapshot and close the listening connections (tests; a process that
    disposes of its engine)."""
    with _lock:
        for entry in _entries.values():
            if entry.listener is not None:
                entry.listener.conn.close()
        _entries.clear()
