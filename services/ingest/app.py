"""The ingest stream processor: ``docs.changes`` → ``chunks.embed`` (+ DLQ). It needs no
database: the embedder, on the same ordered path per document, decides and records the rest.

The shared stream processor (``services.common.processor``) runs ``ingest`` under the one error
policy; the decisions are the pure functions in ``handlers.py``. Run it with
``python -m services.ingest``.
"""

from __future__ import annotations

import logging

from opentelemetry import trace

from services.common.config import get_settings
from services.common.events import ChunkWork
from services.common.exceptions import InvalidEvent
from services.common.logs import log
from services.common.processor import (
    Emit,
    Inbound,
    Outcome,
    StreamProcessor,
    attach,
    done,
)
from services.common.streaming import make_app
from services.common.topics import CHUNKS_EMBED, DOCS_CHANGES, DOCS_CHANGES_DLQ
from services.ingest import handlers
from services.ingest.config import APP_ID, SERVICE_NAME, ingest_settings
from services.ingest.parsers import NoTextLayer

logger = logging.getLogger(__name__)
settings = get_settings()
config = ingest_settings()
files = config.file_access(settings.state_path)
app = make_app(APP_ID, settings)


async def ingest(message: Inbound) -> Outcome:
    """One document event → its chunk work, for the embedder (which alone writes index state:
    it decides staleness and what needs embedding, in the transaction that swaps the chunks)."""
    change = handlers.decode_change(message.key, message.value, config.max_document_bytes)
    if change is None:
        return done(_to_embedder(handlers.tombstone_work(
            (message.key or b"").decode("utf-8", "replace"))))
    span = trace.get_current_span()
    span.set_attribute("doc.id", change.doc_id)
    span.set_attribute("doc.version", change.version)
    try:
        work = handlers.plan_work(change, config.chunking, files)
    except NoTextLayer as exc:
        # Not poison (the file is a valid PDF), but nothing to index: recorded as a failure
        # with the reason, and the stored version (if any) stays as it was.
        log(logger, logging.WARNING, "document not ingested", doc_id=change.doc_id,
            version=change.version, reason=str(exc)[:300])
        return done(_to_embedder(handlers.failed_work(change.doc_id, change.version, str(exc))))
    span.set_attribute("chunks.total", len(work.chunks))
    return done(_to_embedder(work))


def report_dead_letter(message: Inbound, error: InvalidEvent) -> tuple[Emit, ...]:
    """A dead-lettered event that still names its document is recorded as that version's
    failure (with the reason) by the embedder; what was stored for the document is untouched."""
    try:
        change = handlers.decode_change(message.key, message.value, config.max_document_bytes)
    except InvalidEvent:
        return ()
    if change is None:
        return ()
    return (_to_embedder(handlers.failed_work(change.doc_id, change.version,
                                              f"{error.error_type}: {error.reason}")),)


def _to_embedder(work: ChunkWork) -> Emit:
    return Emit(CHUNKS_EMBED, work.doc_id.encode(), work.to_json())


attach(app, StreamProcessor(service=SERVICE_NAME, source=DOCS_CHANGES,
                            dead_letters=DOCS_CHANGES_DLQ, process=ingest,
                            on_dead_letter=report_dead_letter, span_name="ingest.process"))
