"""Ingest's pure decisions: what a raw message means, whether it is stale, which chunks the
embedder must embed, and which ids keep a chunk's stored row across versions."""

import hashlib
import json
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from services.common.events import ChunkWork, DocChange
from services.common.exceptions import InvalidEvent
from services.ingest.chunking import ChunkingConfig
from services.ingest.handlers import (
    chunk_id,
    decode_change,
    failed_work,
    plan_work,
    tombstone_work,
)

pytestmark = pytest.mark.unit

CONFIG = ChunkingConfig(min_words=3, max_words=50)  # every paragraph of 3+ words is one chunk
A = "Refunds are issued within fourteen days."
B = "Shipping is free above fifty euros."
C = "Support answers within one business day."
WHEN = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _upsert(content: str, doc_id: str = "kb/policy.txt", version: int = 5, **extra) -> DocChange:
    return DocChange(doc_id=doc_id, version=version, op="upsert", content=content,
                     event_time=WHEN, **extra)


def _invalid(key: bytes | None, value: bytes | None, max_bytes: int = 10_000) -> InvalidEvent:
    with pytest.raises(InvalidEvent) as caught:
        decode_change(key, value, max_bytes)
    return caught.value


# --- decode_change ---------------------------------------------------------------------------

def test_tombstone_with_a_key_is_a_delete_of_that_document():
    assert decode_change(b"kb/policy.txt", None, 10_000) is None
    assert tombstone_work("kb/policy.txt").model_dump(include={"doc_id", "version", "op"}) == {
        "doc_id": "kb/policy.txt", "version": None, "op": "delete"}


@pytest.mark.parametrize("key", [None, b""])
def test_tombstone_without_a_key_is_invalid(key):
    error = _invalid(key, None)
    assert error.error_type == "schema_violation"
    assert "tombstone without a key" in error.reason


def test_key_must_equal_doc_id():
    error = _invalid(b"other", _upsert(A).to_json())
    assert error.error_type == "key_mismatch"
    assert "'kb/policy.txt'" in error.reason


def test_content_over_the_byte_limit_is_too_large():
    value = _upsert("é" * 600).to_json()  # 1200 bytes of content
    assert _invalid(b"kb/policy.txt", value, max_bytes=1000).error_type == "too_large"


def test_unsupported_content_type_is_a_schema_violation():
    raw = {"doc_id": "a.png", "version": 1, "op": "upsert", "content": "PNG",
           "content_type": "image/png"}
    error = _invalid(b"a.pdf", json.dumps(raw).encode())
    assert error.error_type == "schema_violation"
    assert "content_type" in error.reason
    with pytest.raises(ValidationError):
        DocChange(**raw)


def test_a_pdf_sent_as_text_is_a_schema_violation():
    """Binary formats travel as bytes or by reference; text would have lost bytes already."""
    raw = {"doc_id": "a.pdf", "version": 1, "op": "upsert", "content": "%PDF",
           "content_type": "application/pdf"}
    error = _invalid(b"a.pdf", json.dumps(raw).encode())
    assert error.error_type == "schema_violation"
    assert "content" in error.reason


def test_valid_event_round_trips():
    original = _upsert(f"{A}\n\n{B}", title="Policy", acl=["team:support"],
                       lineage={"path": "/srv/policy.txt"}, privacy_class="restricted")
    assert decode_change(b"kb/policy.txt", original.to_json(), 10_000) == original
    assert decode_change(None, original.to_json(), 10_000) == original  # a keyless upsert


def test_unparsable_event_time_is_a_schema_violation():
    raw = {"doc_id": "a", "version": 1, "op": "delete", "event_time": "yesterday"}
    assert _invalid(b"a", json.dumps(raw).encode()).error_type == "schema_violation"


# --- plan_work ------------------------------------------------------------------------------

def test_delete_becomes_delete_work_without_chunks():
    change = DocChange(doc_id="kb/old.txt", version=8, op="delete", event_time=WHEN)
    work = plan_work(change, CONFIG)
    assert isinstance(work, ChunkWork)
    assert (work.doc_id, work.version, work.op, work.chunks, work.document) == (
        "kb/old.txt", 8, "delete", [], None)
    assert work.event_time == WHEN
    work.to_json()


def test_every_chunk_travels_and_the_embedder_decides_what_to_embed():
    """Ingest asks no database: the embedder consults its cache (and the stored version)."""
    work = plan_work(_upsert(f"{A}\n\n{B}\n\n{C}"), CONFIG)
    assert [(c.ordinal, c.text, c.embed) for c in work.chunks] == [
        (0, A, True), (1, B, True), (2, C, True)]
    assert [c.word_count for c in work.chunks] == [6, 6, 6]
    work.to_json()


def test_a_version_that_cannot_be_read_becomes_failed_work_with_the_reason():
    work = failed_work("kb/scan.pdf", 3, "no text layer: a scanned PDF")
    assert (work.doc_id, work.version, work.op, work.chunks) == ("kb/scan.pdf", 3, "failed", [])
    assert work.reason == "no text layer: a scanned PDF"
    work.to_json()


def test_repeated_identical_paragraphs_get_distinct_chunk_ids():
    work = plan_work(_upsert(f"{A}\n\n{B}\n\n{A}"), CONFIG)
    ids = [c.chunk_id for c in work.chunks]
    assert len(set(ids)) == 3
    assert ids[0] == chunk_id("kb/policy.txt", _sha(A), 0)
    assert ids[2] == chunk_id("kb/policy.txt", _sha(A), 1)
    assert work.chunks[0].content_hash == work.chunks[2].content_hash == _sha(A)


def test_chunk_ids_survive_an_insertion_above_them():
    before = plan_work(_upsert(f"{A}\n\n{B}"), CONFIG)
    after = plan_work(_upsert(f"{C}\n\n{A}\n\n{B}", version=6), CONFIG)
    assert [c.chunk_id for c in after.chunks][1:] == [c.chunk_id for c in before.chunks]
    assert [c.ordinal for c in after.chunks] == [0, 1, 2]


def test_chunk_id_is_stable_and_depends_on_doc_text_and_occurrence():
    base = chunk_id("doc-1", _sha(A), 0)
    assert base == chunk_id("doc-1", _sha(A), 0)
    assert len(base) == 32 and int(base, 16) >= 0
    others = {chunk_id("doc-2", _sha(A), 0), chunk_id("doc-1", _sha(B), 0),
              chunk_id("doc-1", _sha(A), 1)}
    assert base not in others and len(others) == 3
    # The separator keeps ("ab", "c…") and ("a", "bc…") apart.
    assert chunk_id("ab", "c", 0) != chunk_id("a", "bc", 0)


def test_content_hash_is_sha256_of_the_raw_content():
    content = f"  {A}\r\n\r\n{B}  "
    work = plan_work(_upsert(content), CONFIG)
    assert work.content_hash == _sha(content)
    assert [c.content_hash for c in work.chunks] == [_sha(A), _sha(B)]


def test_markdown_headings_travel_with_their_chunks():
    work = plan_work(_upsert(f"# Policy\n\n{A}\n\n## Shipping\n\n{B}",
                             content_type="text/markdown"), CONFIG)
    assert [(c.text, c.heading_path) for c in work.chunks] == [
        (f"Policy\n\n{A}", ["Policy"]), (f"Shipping\n\n{B}", ["Policy", "Shipping"])]
    assert work.document.content_type == "text/markdown"


def test_governance_fields_are_copied_into_the_work_document():
    change = _upsert(A, title="Refund policy", source="wiki", uri="https://wiki/refunds",
                     license="CC-BY-4.0", privacy_class="confidential",
                     acl=["team:support", "user:ana"], lineage={"commit": "abc123"},
                     metadata={"owner": "ana"})
    work = plan_work(change, CONFIG)
    assert work.document.model_dump() == {
        "title": "Refund policy", "source": "wiki", "uri": "https://wiki/refunds",
        "license": "CC-BY-4.0", "privacy_class": "confidential",
        "acl": ["team:support", "user:ana"], "lineage": {"commit": "abc123"},
        "metadata": {"owner": "ana"}, "content_type": "text/plain"}
    assert (work.doc_id, work.version, work.op, work.event_time) == (
        "kb/policy.txt", 5, "upsert", WHEN)
