"""The embedder stream processor: ``chunks.embed`` → Postgres/pgvector (+ status and DLQ).

Run it with ``python -m services.embedder``.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TypeVar

from opentelemetry.trace import SpanKind
from sqlalchemy.exc import DBAPIError, OperationalError
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from services.common import metrics, telemetry
from services.common.config import get_settings
from services.common.db import make_engine
from services.common.embeddings import embedder_from_settings
from services.common.events import ChunkWork, DocStatus
from services.common.exceptions import InvalidEvent
from services.common.logs import log
from services.common.processor import (
    BatchProcessor,
    DeadLetter,
    Emit,
    Inbound,
    Outcome,
    attach_batch,
    done,
    is_infrastructure,
)
from services.common.streaming import make_app
from services.common.topics import CHUNKS_EMBED, CHUNKS_EMBED_DLQ, DOCS_STATUS, spec
from services.embedder import handlers, injection_scan, store
from services.embedder.config import APP_ID, SERVICE_NAME, embedder_settings
from services.embedder.models import WrittenModels

logger = logging.getLogger(__name__)
settings = get_settings()
config = embedder_settings()
model_id = settings.embedding_model_id
# A work item holds the whole chunked document plus JSON framing: the topic's own limit.
max_work_bytes = spec(CHUNKS_EMBED).max_bytes
app = make_app(APP_ID, settings)
engine = make_engine(settings.sqlalchemy_url)
model = embedder_from_settings(settings)
models = WrittenModels(engine, model)  # active model first, then shadow re-index targets
tracer = telemetry.tracer(__name__)
scan_head_file = injection_scan.head_file(config.embed_injection_head, settings.state_path)
T = TypeVar("T")



@app.task
async def warm_up() -> None:
    """Load the model before the first batch so the first document is not slow."""
    await asyncio.get_running_loop().run_in_executor(None, model.warm_up)


async def embed(messages: Sequence[Inbound]) -> list[Outcome]:
    """One model call for the batch's new chunks, then one transaction per document."""
    outcomes: list[Outcome | None] = []
    works: list[tuple[int, Inbound, ChunkWork]] = []
    for message in messages:
        try:
            works.append((len(outcomes), message,
                          handlers.decode_work(message.value, max_work_bytes)))
            outcomes.append(None)
        except InvalidEvent as error:
            outcomes.append(DeadLetter(error))
    if works:
        items = [work for _, _, work in works]
        written = await with_db_retry(models.current)
        if len(written) == 1:
            await _embed_overlapped(works, written[0], outcomes)
            return [outcome for outcome in outcomes if outcome is not None]
        started = time.time_ns()
        by_model: dict[str, dict] = {}
        fresh_by_model: dict[str, set] = {}
        for written_id in written:  # the active model first, then shadow re-index targets
            cached = await with_db_retry(lambda m=written_id: _cached(items, m))
            plan = handlers.plan_embeddings(items, set(cached))
            vectors = await asyncio.get_running_loop().run_in_executor(
                None, models.encoder(written_id).encode_passages, plan.texts)
            fresh = dict(zip(plan.hashes, vectors, strict=True))
            await with_db_retry(lambda m=written_id, f=fresh: _cache(f, m))
            by_model[written_id] = {**cached, **fresh}
            fresh_by_model[written_id] = set(fresh)
        finished = time.time_ns()
        credits = handlers.credit_embedded(items, fresh_by_model[written[0]])
        for (index, message, work), embedded in zip(works, credits, strict=True):
            outcomes[index] = await index_one(message, work, by_model, embedded,
                                              (started, finished))
    return [outcome for outcome in outcomes if outcome is not None]


async def _embed_overlapped(works: list[tuple[int, Inbound, ChunkWork]], model_id: str,
                            outcomes: list[Outcome | None]) -> None:
    """One model, the common case: the batch's new chunks are encoded in slices of
    ``embed_slice_chunks`` (in document order), and while one slice is encoded the documents
    the previous slices completed are written, so Postgres (inserts, HNSW) and the encoder
    work at the same time instead of taking turns. Documents are still written in order, one
    transaction each, and a document only once all its chunks have vectors."""
    items = [work for _, _, work in works]
    encoder = models.encoder(model_id)
    cached = await with_db_retry(lambda: _cached(items, model_id))
    plan = handlers.plan_embeddings(items, set(cached))
    vectors: dict = dict(cached)
    credits = handlers.credit_embedded(items, set(plan.hashes))
    started = time.time_ns()
    writer: asyncio.Task | None = None
    written_upto = 0
    size = max(1, config.embed_slice_chunks)
    try:
        for begin in range(0, max(len(plan.texts), 1), size):
            hashes, texts = plan.hashes[begin:begin + size], plan.texts[begin:begin + size]
            encoded = await asyncio.get_running_loop().run_in_executor(
                None, encoder.encode_passages, texts)
            fresh = dict(zip(hashes, encoded, strict=True))
            vectors.update(fresh)
            ready = handlers.ready_upto(items, written_upto, vectors)
            if writer is not None:
                await writer  # in order; a failure surfaces here and the batch is retried
            writer = asyncio.create_task(_write_slice(
                works[written_upto:ready], credits[written_upto:ready], fresh, model_id,
                vectors, (started, time.time_ns()), outcomes))
            written_upto = ready
        if writer is not None:
            await writer
    finally:
        # An encoder failure while a slice is being written: that write finishes (or fails)
        # before the batch is retried, never concurrently with the retry.
        if writer is not None and not writer.done():
            await asyncio.gather(writer, return_exceptions=True)
    if written_upto < len(works):  # cannot happen: every upsert chunk is cached or planned
        raise AssertionError("documents left without vectors")


async def _write_slice(works: list[tuple[int, Inbound, ChunkWork]], credits: list[int],
                       fresh: dict, model_id: str, vectors: dict,
                       encode_window: tuple[int, int], outcomes: list[Outcome | None]) -> None:
    await with_db_retry(lambda: _cache(fresh, model_id))
    for (index, message, work), embedded in zip(works, credits, strict=True):
        outcomes[index] = await index_one(message, work, {model_id: vectors}, embedded,
                                          encode_window)


def _cached(items: list[ChunkWork], for_model: str) -> dict:
    hashes = [c.content_hash for work in items for c in work.chunks]
    with engine.connect() as conn:
        return store.cached_embeddings(conn, hashes, for_model)


def _cache(fresh: dict, for_model: str) -> None:
    with engine.begin() as conn:
        store.cache_embeddings(conn, fresh, for_model)


async def index_one(message: Inbound, work: ChunkWork, vectors: dict, embedded: int,
                    encode_window: tuple[int, int]) -> Outcome:
    parent = telemetry.extract_context(message.headers)
    with tracer.start_as_current_span(
        "embedder.process", context=parent, kind=SpanKind.CONSUMER,
        attributes={"doc.id": work.doc_id, "doc.version": work.version or -1},
    ) as span:
        # The batch was encoded once for many documents; each document's trace gets an embed
        # span covering that model call, with its own share of the work.
        embed_span = tracer.start_span("embedder.embed", start_time=encode_window[0],
                                       attributes={"chunks.embedded": embedded,
                                                   "embedding.model": next(iter(vectors))})
        embed_span.end(end_time=encode_window[1])
        try:
            result = await with_db_retry(lambda: _swap(work, vectors, embedded))
        except Exception as exc:  # noqa: BLE001 - this document alone is dead-lettered
            # Each document's swap is its own transaction, and the documents before it in the
            # batch are already swapped: re-running the batch would re-apply them, so a
            # failure here is this document's, dead-lettered with the reason.
            if is_infrastructure(exc):
                raise
            refused = "database refused the write" if isinstance(exc, DBAPIError) else (
                f"swap failed: {type(exc).__name__}")
            return DeadLetter(InvalidEvent("processing_error", f"{refused}: {exc}"[:2000]))
        span.set_attribute("index.state", result.state)
        lag_ms = (datetime.now(UTC) - work.event_time).total_seconds() * 1000
        if result.state == "indexed":
            metrics.instruments()["freshness_ms"].record(lag_ms)  # type: ignore[attr-defined]
        status = DocStatus(
            doc_id=work.doc_id, version=work.version, state=result.state,  # type: ignore[arg-type]
            service=SERVICE_NAME, chunks_total=result.chunks_total, chunks_embedded=embedded,
            chunks_reused=max(result.chunks_total - embedded, 0),
            chunks_removed=result.chunks_removed, model_id=next(iter(vectors)),
            event_time=work.event_time, lag_ms=lag_ms if result.state == "indexed" else None,
            reason=result.reason or (None if result.state in ("indexed", "deleted")
                                     else f"stored version {result.stored_version} is not older"),
        )
        return done(Emit(DOCS_STATUS, work.doc_id.encode(), status.to_json()))


def _swap(work: ChunkWork, vectors: dict, embedded: int) -> store.ApplyResult:
    with tracer.start_as_current_span(
        "db.swap_chunks", kind=SpanKind.CLIENT,
        attributes={"db.system": "postgresql", "db.operation": "swap_chunks",
                    "doc.id": work.doc_id},
    ) as span, engine.begin() as conn:
        primary = next(iter(vectors))  # the active model: chunks.model_id / embedding
        work = injection_scan.with_head_scores(
            work, vectors[primary], injection_scan.scan_head(scan_head_file, primary))
        result = store.apply_work(conn, work, vectors[primary], primary)
        if result.state == "indexed":
            store.store_model_vectors(conn, work, vectors)
        lag_ms = (datetime.now(UTC) - work.event_time).total_seconds() * 1000
        store.record_status(conn, work, result,
                            embedded if result.state == "indexed" else 0, lag_ms)
        span.set_attribute("chunks.inserted", result.chunks_inserted)
        span.set_attribute("chunks.removed", result.chunks_removed)
        return result


async def with_db_retry(operation: Callable[[], T]) -> T:
    """Retry while the database is unreachable: the event is not acked, so nothing is lost.
    Per operation rather than per batch, so a document already swapped is not swapped again."""
    async for attempt in AsyncRetrying(
        retry=retry_if_exception_type(OperationalError),
        stop=stop_after_attempt(config.embed_db_retry_attempts),
        wait=wait_exponential(multiplier=0.5, max=10.0),
        before_sleep=lambda state: log(logger, logging.WARNING,
                                       "database unavailable, retrying",
                                       attempt=state.attempt_number),
        reraise=True,
    ):
        with attempt:
            # copy_context: the worker thread must see the current span as its parent.
            return await asyncio.get_running_loop().run_in_executor(
                None, contextvars.copy_context().run, operation)
    raise AssertionError("unreachable")


attach_batch(app, BatchProcessor(service=SERVICE_NAME, source=CHUNKS_EMBED,
                                 dead_letters=CHUNKS_EMBED_DLQ, process_batch=embed,
                                 batch_size=config.embed_batch_size,
                                 batch_window_s=config.embed_batch_window_s))
