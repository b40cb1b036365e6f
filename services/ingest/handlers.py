"""Pure ingest logic: raw change event in, chunk work out.

No Kafka and no database here. Ingest does not ask Postgres anything: whether a version is
stale and which chunks need embedding are decided by the embedder, inside the transaction that
swaps the document's chunks, so the document path reads the database once, not twice.
"""

from __future__ import annotations

import hashlib

from services.common.events import ChunkWork, DocChange, DocumentInfo, WorkChunk
from services.common.exceptions import InvalidEvent
from services.common.injection import injection_score
from services.common.messages import decode_json, parse_model
from services.common.text_normalize import normalize
from services.common.topics import DOCS_CHANGES, spec
from services.ingest.chunking import (
    Chunk,
    ChunkingConfig,
    chunk_blocks,
    chunk_document,
    content_hash,
)
from services.ingest.content import FileAccess, as_text, raw_content
from services.ingest.normalize import UnsupportedContentType
from services.ingest.parsers import UnreadableDocument, is_binary, parse

SCHEMA = spec(DOCS_CHANGES).schema


def decode_change(key: bytes | None, value: bytes | None, max_bytes: int) -> DocChange | None:
    """Parse and validate one message. ``None`` means a tombstone (delete of the key's doc)."""
    if value is None:
        if not key:
            raise InvalidEvent("schema_violation", "tombstone without a key: no doc_id to delete")
        return None
    change = parse_model(DocChange, decode_json(value, max_bytes, SCHEMA))
    if key is not None and key.decode("utf-8", "replace") != change.doc_id:
        raise InvalidEvent(
            "key_mismatch", f"message key {key!r} differs from doc_id {change.doc_id!r}; "
            "events must be keyed by doc_id to stay ordered"
        )
    return change


def failed_work(doc_id: str, version: int, reason: str) -> ChunkWork:
    """A version that could not be ingested, for the embedder to record with the reason (the
    stored document stays as it was; a newer version's status is never overwritten)."""
    return ChunkWork(doc_id=doc_id, version=version, op="failed", reason=reason[:2000])


def chunk_id(doc_id: str, chunk_hash: str, occurrence: int) -> str:
    """Stable per document: the same text at any position keeps its id (and its embedding row);
    ``occurrence`` separates repeated identical paragraphs."""
    raw = f"{doc_id}\x00{chunk_hash}\x00{occurrence}".encode()
    return hashlib.sha256(raw).hexdigest()[:32]


def plan_work(change: DocChange, config: ChunkingConfig,
              access: FileAccess = FileAccess()) -> ChunkWork:
    """The new version's complete chunk set (or its delete / relabel).

    ``access`` says which files a ``content_ref`` may name. Raises InvalidEvent (DLQ) for
    input that cannot be read, and ``parsers.NoTextLayer`` for a scanned PDF.
    """
    if change.op == "delete":
        return ChunkWork(doc_id=change.doc_id, version=change.version, op="delete",
                         event_time=change.event_time)
    if change.op == "acl":
        # Only the labels travel: the embedder relabels the stored document in place (same
        # ordered path as content, so an earlier upsert still in flight is applied first).
        return ChunkWork(doc_id=change.doc_id, version=change.version, op="acl",
                         document=DocumentInfo(content_type=change.content_type,
                                               **change.governance().model_dump()),
                         event_time=change.event_time)
    chunks, document_hash = _chunks_of(change, config, access)
    seen: dict[str, int] = {}
    work_chunks = []
    for chunk in chunks:
        occurrence = seen.get(chunk.content_hash, 0)
        seen[chunk.content_hash] = occurrence + 1
        work_chunks.append(WorkChunk(
            chunk_id=chunk_id(change.doc_id, chunk.content_hash, occurrence),
            ordinal=chunk.ordinal, content_hash=chunk.content_hash, text=chunk.text,
            word_count=chunk.word_count, heading_path=list(chunk.heading_path),
            injection_score=scan_chunk(chunk.text),
            page_start=chunk.page_start, page_end=chunk.page_end,
        ))
    governance = change.governance().model_dump()
    return ChunkWork(
        doc_id=change.doc_id, version=change.version, op="upsert",
        content_hash=document_hash,
        document=DocumentInfo(content_type=change.content_type, **governance),
        chunks=work_chunks, event_time=change.event_time,
    )


def _chunks_of(change: DocChange, config: ChunkingConfig, access: FileAccess
               ) -> tuple[list[Chunk], str]:
    """The chunks and the document's content hash. For a file (base64 or reference) the hash
    is the SHA-256 of its bytes, which for a UTF-8 text file equals the hash of its text: the
    same value `customllm reconcile` computes from the file on disk."""
    raw = raw_content(change, access)
    if is_binary(change.content_type):
        if isinstance(raw, str):
            raise InvalidEvent("schema_violation", f"{change.content_type} must travel as bytes")
        try:
            parsed = parse(raw, change.content_type)
        except UnreadableDocument as exc:
            raise InvalidEvent(exc.error_type, exc.reason) from exc
        return chunk_blocks(parsed.blocks, config), hashlib.sha256(raw).hexdigest()
    text = as_text(raw, change.content_ref or "content_base64")
    try:
        return chunk_document(text, change.content_type, config), content_hash(text)
    except UnsupportedContentType as exc:
        raise InvalidEvent("unsupported_content", str(exc)) from exc


def scan_chunk(text: str) -> float:
    """Documents are an attack surface: a chunk that tells the model what to do is scored here
    (rules and heuristics, about a millisecond) and the score is stored on the chunk, so
    retrieval can exclude or fence it by policy. Scoring never drops a chunk."""
    return injection_score(normalize(text).text).score


def tombstone_work(doc_id: str) -> ChunkWork:
    """A Kafka tombstone carries no version: delete whatever version is stored."""
    return ChunkWork(doc_id=doc_id, version=None, op="delete")
