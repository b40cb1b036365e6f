"""The output stage's PII detector with the stored findings of indexed chunks in front of it.

``redact_output`` asks the detector about the answer, the above-clearance chunks and every
citation text. Chunk and citation texts come from the index, so their findings were stored by
the background indexer (``pii_indexer``, ``services.common.pii_findings``): here they are
fetched for one answer in one query, before the checks run, and the detector runs only on the
answer's own text and on what the store does not hold (a chunk the indexer has not reached
yet, a detector change). What it had to analyse it stores, so the next answer finds it.

A citation of neighbouring chunks merged into one item is their texts joined
(``CHUNK_JOINER``): its findings are theirs, each shifted to where its text starts, so such a
citation is a lookup too (and its redaction is the same as when each chunk is cited alone,
instead of depending on which neighbours a question happened to retrieve together).

The redaction logic does not change: it sees the same findings, whichever way they came, as
long as the version matches (same detector source, packages and minimum score). A store that
cannot be reached costs speed, not safety: everything is analysed as before.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from sqlalchemy.engine import Engine

from services.common import pii_findings
from services.common.events import Citation
from services.common.logs import log
from services.common.pii import DEFAULT_MIN_SCORE, PiiFinding
from services.common.prompting.context_item import CHUNK_JOINER
from services.guardrails.checks.output_pii import FindPii

logger = logging.getLogger(__name__)


@dataclass
class LookupStats:
    """What one answer's lookup did, for the span and the benchmark."""

    texts: int = 0
    hits: int = 0
    joined: int = 0  # merged citations answered from their chunks' findings
    analysed: int = 0
    stored: int = 0
    lookup_ms: float = 0.0
    error: str | None = None

    def attributes(self) -> dict[str, int | float | str]:
        found: dict[str, int | float | str] = {
            "pii.stored.texts": self.texts, "pii.stored.hits": self.hits,
            "pii.stored.joined": self.joined,
            "pii.stored.analysed": self.analysed, "pii.stored.written": self.stored,
            "pii.stored.lookup_ms": round(self.lookup_ms, 3)}
        if self.error:
            found["pii.stored.error"] = self.error
        return found


@dataclass
class StoredDetector:
    """``find(text, min_score=...)`` answering indexed texts from the store.

    Only calls the stored findings can answer exactly are answered from it: no ``entities``
    filter and the minimum score the findings were looked up with. Anything else goes to the
    detector."""

    detect: FindPii
    engine: Engine | None
    min_score: float
    indexed: dict[str, str] = field(default_factory=dict)  # hash → text
    joins: dict[str, list[str]] = field(default_factory=dict)  # merged text's hash → parts
    known: dict[str, list[PiiFinding]] = field(default_factory=dict)
    new: dict[str, list[PiiFinding]] = field(default_factory=dict)
    stats: LookupStats = field(default_factory=LookupStats)

    @property
    def version(self) -> str:
        return pii_findings.detector_version(self.min_score)

    def prefetch(self, texts: Iterable[str],
                 joins: Mapping[str, Sequence[str]] | None = None) -> StoredDetector:
        """One query for every indexed text of this answer; ``joins``: merged citation texts →
        the chunk texts they join (looked up too)."""
        self.joins = {pii_findings.text_hash(text): list(parts)
                      for text, parts in (joins or {}).items()}
        wanted = [*texts, *(part for parts in self.joins.values() for part in parts)]
        self.indexed = {pii_findings.text_hash(t): t for t in wanted if t and t.strip()}
        self.stats.texts = len(self.indexed)
        if self.engine is None or not self.indexed:
            return self
        started = time.perf_counter()
        try:
            self.known = pii_findings.lookup(self.engine, self.indexed, self.version)
        except Exception as exc:  # noqa: BLE001 - no store: analyse everything, as before
            self.stats.error = type(exc).__name__
            self.engine = None
            log(logger, logging.WARNING, "stored PII findings unavailable; analysing chunks",
                error=repr(exc)[:300])
        self.stats.lookup_ms = (time.perf_counter() - started) * 1000
        return self

    def __call__(self, text: str, entities: object = None,
                 min_score: float = DEFAULT_MIN_SCORE) -> list[PiiFinding]:
        if entities is not None or min_score != self.min_score:
            return self.detect(text, entities=entities, min_score=min_score)
        key = pii_findings.text_hash(text)
        if key not in self.indexed:  # the answer's own text: always analysed
            return self.detect(text, min_score=min_score)
        if key in self.known:
            self.stats.hits += 1
            return list(self.known[key])
        parts = self.joins.get(key)
        if parts and all(pii_findings.text_hash(p) in self.known for p in parts):
            self.stats.joined += 1
            return _shifted(parts, [self.known[pii_findings.text_hash(p)] for p in parts])
        found = self.detect(text, min_score=min_score)
        self.stats.analysed += 1
        self.known[key] = self.new[key] = found
        return list(found)

    def flush(self) -> None:
        """Store what was analysed (idempotent; a failure only means it is analysed again)."""
        if self.engine is None or not self.new:
            return
        try:
            self.stats.stored = pii_findings.store(self.engine, self.new, self.version)
        except Exception as exc:  # noqa: BLE001 - a cache write never fails an answer
            self.stats.error = type(exc).__name__
            log(logger, logging.WARNING, "could not store PII findings", error=repr(exc)[:300])
        self.new = {}


def joined_citations(citations: Iterable[Citation], chunk_texts: Mapping[str, str]
                     ) -> dict[str, list[str]]:
    """Citation texts that are exactly their chunks' texts joined (a merged context item) →
    those texts, in order. Anything else (a truncated item, a text the store never saw) is
    not composed and goes to the detector."""
    found: dict[str, list[str]] = {}
    for citation in citations:
        text, ids = citation.text, citation.chunk_ids
        if not text or len(ids) < 2 or not all(i in chunk_texts for i in ids):
            continue
        parts = [chunk_texts[i] for i in ids]
        if CHUNK_JOINER.join(parts) == text:
            found[text] = parts
    return found


def _shifted(parts: Sequence[str], findings: Sequence[Sequence[PiiFinding]]
             ) -> list[PiiFinding]:
    """Each part's findings moved to where the part starts in the joined text."""
    out: list[PiiFinding] = []
    offset = 0
    for part, found in zip(parts, findings, strict=True):
        out += [PiiFinding(f.entity_type, f.start + offset, f.end + offset, f.score)
                for f in found]
        offset += len(part) + len(CHUNK_JOINER)
    return out
