"""Publishing an evaluation corpus (e.g. SQuAD paragraphs) and waiting until it is indexed."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import text
from sqlalchemy.engine import Engine

from services.common import telemetry
from services.common.config import get_settings
from services.common.events import DocChange
from services.common.producer import send
from services.common.source_publisher import SourceProducers
from services.common.topics import DOCS_CHANGES


def publish_documents(bootstrap: str, documents: Sequence[DocChange],
                      on_sent: Callable[[], None] | None = None) -> None:
    """Send the document events to ``docs.changes`` (keyed by doc id) as their source's Kafka
    identity, and wait for the acks. The source must be approved (`customllm sources
    approve squad`)."""
    producers, errors = SourceProducers(get_settings(), bootstrap), []
    for change in documents:
        send(producers.for_source(change.source), DOCS_CHANGES, change.doc_id, change.to_json(),
             telemetry.inject_headers(), errors)
        if on_sent is not None:
            on_sent()
    producers.flush(errors)


@dataclass
class IndexingState:
    indexed: set[str] = field(default_factory=set)
    failed: dict[str, str] = field(default_factory=dict)  # doc id → error
    pending: set[str] = field(default_factory=set)


def indexing_state(engine: Engine, expected: dict[str, int]) -> IndexingState:
    """Which documents the embedder has indexed at (at least) the expected version, which
    failed, and which are still pending."""
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT doc_id, last_version, state, error FROM ingestion_status "
            "WHERE doc_id = ANY(:ids)"), {"ids": list(expected)}).all()
    seen = {row.doc_id: row for row in rows}
    state = IndexingState()
    for doc_id, version in expected.items():
        row = seen.get(doc_id)
        if row is not None and row.last_version is not None and row.last_version >= version:
            if row.state == "indexed":
                state.indexed.add(doc_id)
                continue
            if row.state == "failed":
                state.failed[doc_id] = row.error or "failed"
                continue
        state.pending.add(doc_id)
    return state
