"""The ingest stream processor: ``docs.changes`` → ``chunks.embed`` (+ DLQ and status).

The shared stream processor (``services.common.processor``) runs ``ingest`` under the one error
policy; the decisions are the pure functions in ``handlers.py``. Run it with
``python -m services.ingest``.
"""

from __future__ import annotations

import logging

from opentelemetry import trace

from services.common.config import get_settings
from services.common.db import make_engine
from services.common.events import DocStatus
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
from services.common.topics import CHUNKS_EMBED, DOCS_CHANGES, DOCS_CHANGES_DLQ, DOCS_STATUS
from services.ingest import handlers, store
from services.ingest.config import APP_ID, SERVICE_NAME, ingest_settings
from services.ingest.parsers import NoTextLayer

logger = logging.getLogger(__name__)
settings = get_settings()
config = ingest_settings()
files = config.file_access(settings.state_path)
app = make_app(APP_ID, settings)
engine = make_engine(settings.sqlalchemy_url)


async def ingest(message: Inbound) -> Outcome:
    """One document event → its chunk work (or a status saying why there is none)."""
    change = handlers.decode_change(message.key, message.value, config.max_document_bytes)
    if change is None:
        plan = handlers.tombstone_work((message.key or b"").decode("utf-8", "replace"))
    else:
        span = trace.get_current_span()
        span.set_attribute("doc.id", change.doc_id)
        span.set_attribute("doc.version", change.version)
        try:
            plan = handlers.plan_work(
                change, store.stored_version(engine, change.doc_id),
                lambda hashes: store.cached_hashes(engine, hashes, settings.embedding_model_id),
                config.chunking, files,
            )
        except NoTextLayer as exc:
            # Not poison (the file is a valid PDF), but nothing to index: a clear status, and
            # the stored version (if any) stays as it was.
            return done(_failure(change.doc_id, change.version, str(exc)))
    if isinstance(plan, handlers.Stale):
        store.count_stale(engine, plan.doc_id, plan.version)
        status = DocStatus(doc_id=plan.doc_id, version=plan.version, state="stale_ignored",
                           service=SERVICE_NAME,
                           reason=f"stored version {plan.stored_version} is not older")
        log(logger, logging.INFO, "stale event ignored", doc_id=plan.doc_id,
            version=plan.version, stored_version=plan.stored_version)
        return done(Emit(DOCS_STATUS, plan.doc_id.encode(), status.to_json()))
    span = trace.get_current_span()
    span.set_attribute("chunks.total", len(plan.chunks))
    span.set_attribute("chunks.to_embed", sum(c.embed for c in plan.chunks))
    return done(Emit(CHUNKS_EMBED, plan.doc_id.encode(), plan.to_json()))


def report_dead_letter(message: Inbound, error: InvalidEvent) -> tuple[Emit, ...]:
    """A dead-lettered event that still names its document leaves a 'failed' status row and a
    docs.status event with the reason; what was stored for the document is untouched."""
    try:
        change = handlers.decode_change(message.key, message.value, config.max_document_bytes)
    except InvalidEvent:
        return ()
    if change is None:
        return ()
    return (_failure(change.doc_id, change.version, f"{error.error_type}: {error.reason}"),)


def _failure(doc_id: str, version: int, reason: str) -> Emit:
    store.record_failure(engine, doc_id, version, reason)
    log(logger, logging.WARNING, "document not ingested", doc_id=doc_id, version=version,
        reason=reason[:300])
    status = DocStatus(doc_id=doc_id, version=version, state="failed", service=SERVICE_NAME,
                       reason=reason[:2000])
    return Emit(DOCS_STATUS, doc_id.encode(), status.to_json())


attach(app, StreamProcessor(service=SERVICE_NAME, source=DOCS_CHANGES,
                            dead_letters=DOCS_CHANGES_DLQ, process=ingest,
                            on_dead_letter=report_dead_letter, span_name="ingest.process"))
