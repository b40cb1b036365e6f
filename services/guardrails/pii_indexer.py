"""PII findings of indexed chunks, computed once in the background so answers only look them up.

The output stage redacts the personal data of cited chunks by the reader's clearance. Running
Presidio over every cited chunk of every answer cost ~70 ms a chunk, so findings are stored per
chunk text and detector version (``services.common.pii_findings``) and the output stage reads
them. They are computed *here*, by the guardrails worker, rather than on the document path:

* the ingest worker stays a lean process that needs no database and no spaCy (issue 12), and
  the embedder's throughput is the encoder's, not the detector's (~84 ms a paragraph);
* the guardrails worker already holds the detector the output stage uses, so the findings are
  the output stage's own by construction, and no second copy of spaCy is loaded anywhere.

The indexer lags ingestion by design: every few seconds it takes a batch of indexed chunks whose
text has no findings under the current version and analyses them in a thread, pausing between
batches so questions keep the CPU. A chunk cited before its turn is analysed by the output stage
itself and stored then (``stored_pii``), so safety never waits for the indexer. Replicas take a
transaction-scoped advisory lock per batch, so one analyses while the others skip; a crash loses
at most one batch of work, redone on the next pass (writes are ``ON CONFLICT DO NOTHING``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.engine import Engine

from services.common import pii_findings
from services.common.logs import log

logger = logging.getLogger(__name__)
LOCK_KEY = 0x70696931  # "pii1": one indexing batch at a time across replicas


@dataclass(frozen=True)
class BatchResult:
    analysed: int
    stored: int
    skipped: bool = False  # another replica held the lock


def pending(engine: Engine, version: str, limit: int) -> list[tuple[str, str]]:
    """(content hash, text) of indexed chunks without findings under ``version``, newest
    first: a document just published is the one most likely to be asked about next."""
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT c.content_hash, (array_agg(c.text))[1] FROM chunks c "
            "WHERE NOT EXISTS (SELECT 1 FROM chunk_pii_findings f WHERE f.content_hash = "
            "c.content_hash AND f.detector_version = :version) "
            "GROUP BY c.content_hash ORDER BY max(c.created_at) DESC, c.content_hash "
            "LIMIT :limit"), {"version": version, "limit": limit}).all()
    return [(row[0], row[1]) for row in rows]


def index_batch(engine: Engine, detect: pii_findings.Detect, min_score: float,
                batch_size: int) -> BatchResult:
    """Analyse and store one batch, under the replicas' lock. The chunk's stored hash is only
    trusted when it is the hash of its text (the key the output stage looks up)."""
    version = pii_findings.detector_version(min_score)
    with engine.begin() as conn:
        if not conn.execute(text("SELECT pg_try_advisory_xact_lock(:k)"),
                            {"k": LOCK_KEY}).scalar_one():
            return BatchResult(0, 0, skipped=True)
        todo = pending(engine, version, batch_size)
        found = {}
        for stored_hash, chunk_text in todo:
            key = pii_findings.text_hash(chunk_text)
            found[key] = detect(chunk_text, min_score=min_score)
            if key != stored_hash:  # cannot happen with the chunker's hash; never loop on it
                found[stored_hash] = found[key]
        stored = pii_findings.store(engine, found, version)
    return BatchResult(len(todo), stored)


def index_all(engine: Engine, detect: pii_findings.Detect, min_score: float,
              batch_size: int, between_batches: Callable[[], None] = lambda: None) -> int:
    """Batches until nothing is pending (or another replica is at it); how many were analysed."""
    total = 0
    while True:
        result = index_batch(engine, detect, min_score, batch_size)
        total += result.analysed
        if result.skipped or result.analysed < batch_size:
            if result.analysed:
                log(logger, logging.INFO, "PII findings indexed", chunks=total)
            return total
        between_batches()


def prune_stale(engine: Engine, older_than_s: float) -> int:
    """Findings of older detector builds deleted (``pii_findings.prune``); logged when any."""
    deleted = pii_findings.prune(engine, older_than_s)
    if deleted:
        log(logger, logging.INFO, "stale PII findings pruned", rows=deleted,
            older_than_h=round(older_than_s / 3600, 2))
    return deleted
