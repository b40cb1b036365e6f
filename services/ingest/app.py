"""The ingest stream processor: ``docs.changes`` → ``chunks.embed`` (+ DLQ and status).

The agent only wires Kafka to the pure functions in ``handlers.py``; run it with
``python -m services.ingest``.
"""

from __future__ import annotations

import logging

import faust
from faust.types import EventT
from opentelemetry.trace import SpanKind
from sqlalchemy.exc import DBAPIError

from services.common import telemetry
from services.common.config import get_settings
from services.common.db import make_engine
from services.common.dlq import send_to_dlq
from services.common.events import DocStatus
from services.common.exceptions import InvalidEvent
from services.common.logs import log
from services.common.streaming import make_app
from services.common.topics import CHUNKS_EMBED, DOCS_CHANGES, DOCS_CHANGES_DLQ, DOCS_STATUS
from services.ingest import handlers, store
from services.ingest.config import APP_ID, SERVICE_NAME, ingest_config
from services.ingest.parsers import NoTextLayer

logger = logging.getLogger(__name__)
settings = get_settings()
config = ingest_config(settings)
app = make_app(APP_ID, settings)
engine = make_engine(settings.sqlalchemy_url)
tracer = telemetry.tracer(__name__)

changes_topic = app.topic(DOCS_CHANGES)
work_topic = app.topic(CHUNKS_EMBED)
dlq_topic = app.topic(DOCS_CHANGES_DLQ)
status_topic = app.topic(DOCS_STATUS)


@app.agent(changes_topic)
async def ingest(stream: faust.StreamT) -> None:
    async for event in stream.events():
        await process_event(event)


async def process_event(event: EventT) -> None:
    message = event.message
    parent = telemetry.extract_context(message.headers)
    with tracer.start_as_current_span(
        "ingest.process", context=parent, kind=SpanKind.CONSUMER,
        attributes={"messaging.source": message.topic,
                    "messaging.kafka.partition": message.partition,
                    "messaging.kafka.offset": message.offset},
    ) as span:
        change = None
        try:
            change = handlers.decode_change(message.key, message.value, config.max_document_bytes)
            if change is None:
                plan = handlers.tombstone_work(message.key.decode("utf-8", "replace"))
            else:
                span.set_attribute("doc.id", change.doc_id)
                span.set_attribute("doc.version", change.version)
                plan = handlers.plan_work(
                    change, store.stored_version(engine, change.doc_id),
                    lambda hashes: store.cached_hashes(engine, hashes, config.model_id),
                    config.chunking, config.files,
                )
        except NoTextLayer as exc:
            # Not poison (the file is a valid PDF), but nothing to index: a clear status, and
            # the stored version (if any) stays as it was.
            assert change is not None
            await _report_failure(change.doc_id, change.version, str(exc))
            return
        except InvalidEvent as error:
            span.set_attribute("dlq.reason", error.error_type)
            await send_to_dlq(dlq_topic, event, error, SERVICE_NAME)
            if change is not None:
                await _report_failure(change.doc_id, change.version,
                                      f"{error.error_type}: {error.reason}")
            return
        except DBAPIError:
            raise  # infrastructure: the worker exits and the event is re-delivered
        except Exception as exc:  # noqa: BLE001 - a bug on one input must not stop the stream
            span.record_exception(exc)
            await send_to_dlq(dlq_topic, event, InvalidEvent(
                "processing_error", f"{type(exc).__name__}: {exc}"), SERVICE_NAME)
            if change is not None:
                await _report_failure(change.doc_id, change.version,
                                      f"processing_error: {type(exc).__name__}: {exc}")
            return
        if isinstance(plan, handlers.Stale):
            store.count_stale(engine, plan.doc_id, plan.version)
            status = DocStatus(doc_id=plan.doc_id, version=plan.version, state="stale_ignored",
                               service=SERVICE_NAME,
                               reason=f"stored version {plan.stored_version} is not older")
            await (await status_topic.send(key=plan.doc_id.encode(), value=status.to_json()))
            log(logger, logging.INFO, "stale event ignored", doc_id=plan.doc_id,
                version=plan.version, stored_version=plan.stored_version)
            return
        span.set_attribute("chunks.total", len(plan.chunks))
        span.set_attribute("chunks.to_embed", sum(c.embed for c in plan.chunks))
        headers = telemetry.inject_headers()
        await (await work_topic.send(key=plan.doc_id.encode(), value=plan.to_json(),
                                     headers=headers))


async def _report_failure(doc_id: str, version: int, reason: str) -> None:
    """A failed event leaves a 'failed' status row and a docs.status event with the reason."""
    store.record_failure(engine, doc_id, version, reason)
    status = DocStatus(doc_id=doc_id, version=version, state="failed", service=SERVICE_NAME,
                       reason=reason[:2000])
    await (await status_topic.send(key=doc_id.encode(), value=status.to_json()))
    log(logger, logging.WARNING, "document not ingested", doc_id=doc_id, version=version,
        reason=reason[:300])
