"""Index reconciliation: what a source holds versus what the index holds, and the events that
close the gap.

Incremental indexers drift silently: an event lost before it was acknowledged, a file deleted
while the watcher was down, a worker that failed on one document while every run "succeeded".
Reconciliation does not trust the event history; it compares the two ends directly:

* **missing**: in the source, not in the index (never indexed, or deleted from it);
* **stale**: in both, but the indexed content hash differs from the source's;
* **orphaned**: in the index (within the compared scope), no longer in the source;
* **failed**: the latest event for the document failed (dead-lettered, no text layer), so
  the index holds an older version or nothing.

The drift percentage is the share of documents (source ∪ indexed scope) in any of those states.
The content hash compared is the one ingest stores: SHA-256 of the file's bytes (for a UTF-8
text file, the same as the hash of its text).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Engine

DRIFT_KINDS = ("missing", "stale", "orphaned", "failed")


@dataclass(frozen=True)
class IndexedDoc:
    doc_id: str
    version: int | None
    content_hash: str | None
    deleted: bool
    status_state: str | None = None
    status_version: int | None = None
    error: str | None = None

    @property
    def live(self) -> bool:
        return self.version is not None and not self.deleted

    @property
    def last_event_failed(self) -> bool:
        """The newest event for the document failed (a newer version than the stored one)."""
        if self.status_state != "failed":
            return False
        return (self.version is None or self.status_version is None
                or self.status_version >= self.version)


@dataclass
class Drift:
    """One comparison's outcome: doc ids per kind, and the ones already in sync."""

    missing: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    orphaned: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    in_sync: list[str] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)  # failed doc id -> why

    @property
    def drifted(self) -> int:
        return sum(len(getattr(self, kind)) for kind in DRIFT_KINDS)

    @property
    def total(self) -> int:
        return self.drifted + len(self.in_sync)

    @property
    def percent(self) -> float:
        return 100.0 * self.drifted / self.total if self.total else 0.0

    def counts(self) -> dict[str, int]:
        return {kind: len(getattr(self, kind)) for kind in (*DRIFT_KINDS, "in_sync")}

    def to_dict(self) -> dict[str, Any]:
        return {"counts": self.counts(), "total": self.total, "drift_percent":
                round(self.percent, 2), **{kind: sorted(getattr(self, kind))
                                           for kind in DRIFT_KINDS}, "reasons": self.reasons}


def file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def compare(source: Mapping[str, str | None], indexed: Mapping[str, IndexedDoc]) -> Drift:
    """``source`` maps doc id → content hash (None: only the id is known, e.g. a doc-id list,
    so staleness cannot be judged from content); ``indexed`` is the index within scope."""
    drift = Drift()
    for doc_id in sorted(source):
        doc = indexed.get(doc_id)
        if doc is not None and doc.last_event_failed:
            drift.failed.append(doc_id)
            drift.reasons[doc_id] = doc.error or "failed"
        elif doc is None or not doc.live:
            drift.missing.append(doc_id)
        elif source[doc_id] is not None and doc.content_hash != source[doc_id]:
            drift.stale.append(doc_id)
        else:
            drift.in_sync.append(doc_id)
    for doc_id in sorted(set(indexed) - set(source)):
        if indexed[doc_id].live:
            drift.orphaned.append(doc_id)
    return drift


def _like(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def load_indexed(engine: Engine, *, id_prefix: str = "", source: str | None = None,
                 doc_ids: Iterable[str] = ()) -> dict[str, IndexedDoc]:
    """The index within scope: doc ids under ``id_prefix`` (and of ``source`` when given),
    plus any explicitly named ``doc_ids``; failures without a stored document included."""
    named = sorted(set(doc_ids))
    query = text("""
        SELECT coalesce(d.doc_id, s.doc_id) AS doc_id, d.version, d.content_hash,
               coalesce(d.deleted, false) AS deleted, s.state, s.last_version, s.error
        FROM documents d FULL OUTER JOIN ingestion_status s ON s.doc_id = d.doc_id
        WHERE (coalesce(d.doc_id, s.doc_id) LIKE :pattern ESCAPE '\\'
               AND (CAST(:source AS text) IS NULL OR d.source = :source OR d.doc_id IS NULL))
           OR coalesce(d.doc_id, s.doc_id) = ANY(:named)
    """)
    with engine.connect() as conn:
        rows = conn.execute(query, {"pattern": _like(id_prefix), "source": source,
                                    "named": named}).all()
    return {row.doc_id: IndexedDoc(row.doc_id, row.version, row.content_hash, row.deleted,
                                   row.state, row.last_version, row.error) for row in rows}


def record_drift(drift: Drift, scope: str, meter: Any = None) -> None:  # noqa: ANN401
    """Export the drift as OpenTelemetry gauges so an operator can alert on it:
    ``customllm.index.drift`` (documents, by kind) and ``customllm.index.drift_ratio``."""
    if meter is None:
        from opentelemetry import metrics

        meter = metrics.get_meter("customllm")
    gauge = meter.create_gauge("customllm.index.drift", unit="{document}",
                               description="documents out of sync with their source, by kind")
    ratio = meter.create_gauge("customllm.index.drift_ratio", unit="1",
                               description="share of a source's documents out of sync")
    for kind, count in drift.counts().items():
        gauge.set(count, {"scope": scope, "kind": kind})
    ratio.set(drift.percent / 100.0, {"scope": scope})
