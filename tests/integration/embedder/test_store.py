"""The embedder's swap against real Postgres: the version check and the chunk diff run in the
caller's transaction, so replays are no-ops, readers never see a mix and a crash rolls back."""

import hashlib
import uuid

import numpy as np
import pytest

from services.common.events import ChunkWork, DocumentInfo, WorkChunk
from services.embedder.store import (
    apply_work,
    cache_embeddings,
    cached_embeddings,
    record_status,
)
from services.ingest.handlers import chunk_id

pytestmark = pytest.mark.integration

MODEL = "test-model"
DIM = 384
RNG = np.random.default_rng(20260314)
DOC = DocumentInfo(content_type="text/markdown", title="Policy", source="tests",
                   uri="https://wiki/policy", license="CC-BY-4.0", privacy_class="confidential",
                   acl=["team:a", "team:b"], lineage={"commit": "abc"}, metadata={"owner": "ana"})


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _unit() -> np.ndarray:
    v = RNG.standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def _texts(n: int) -> list[str]:
    return [f"paragraph {uuid.uuid4().hex} about refunds" for _ in range(n)]


def _upsert(doc_id: str, version: int, texts: list[str]) -> ChunkWork:
    chunks = [WorkChunk(chunk_id=chunk_id(doc_id, _sha(t), 0), ordinal=i, content_hash=_sha(t),
                        text=t, word_count=len(t.split()), embed=True)
              for i, t in enumerate(texts)]
    return ChunkWork(doc_id=doc_id, version=version, op="upsert",
                     content_hash=_sha("\n\n".join(texts)), document=DOC, chunks=chunks)


def _delete(doc_id: str, version: int | None) -> ChunkWork:
    return ChunkWork(doc_id=doc_id, version=version, op="delete")


def _array(value) -> np.ndarray:
    """pgvector hands back ``Vector`` objects or numpy arrays, depending on its version."""
    return np.asarray(value.to_numpy() if hasattr(value, "to_numpy") else value)


def _vectors(texts: list[str]) -> dict[str, np.ndarray]:
    return {_sha(t): _unit() for t in texts}


def _apply(stack, work: ChunkWork, vectors: dict | None = None):
    with stack.engine.begin() as conn:
        return apply_work(conn, work, vectors or {}, MODEL)


def _chunks(stack, doc_id: str) -> list[tuple]:
    return [tuple(r) for r in stack.query(
        "SELECT chunk_id, ordinal, content_hash, text, created_at FROM chunks "
        "WHERE doc_id = :d ORDER BY ordinal", d=doc_id)]


def _document(stack, doc_id: str):
    rows = stack.query("SELECT * FROM documents WHERE doc_id = :d", d=doc_id)
    return rows[0] if rows else None


def _doc_id() -> str:
    return f"store-{uuid.uuid4().hex}"


def test_first_upsert_inserts_every_chunk_with_its_vector(stack):
    doc_id, texts = _doc_id(), _texts(3)
    vectors = _vectors(texts)
    result = _apply(stack, _upsert(doc_id, 1, texts), vectors)
    assert (result.state, result.chunks_total, result.chunks_inserted, result.chunks_removed) == (
        "indexed", 3, 3, 0)
    rows = _chunks(stack, doc_id)
    assert [(r[1], r[2], r[3]) for r in rows] == [(i, _sha(t), t) for i, t in enumerate(texts)]
    stored = stack.query("SELECT content_hash, embedding, model_id FROM chunks WHERE doc_id = :d",
                         d=doc_id)
    for content_hash, embedding, model_id in stored:
        assert model_id == MODEL
        assert np.allclose(_array(embedding), vectors[content_hash])
    doc = _document(stack, doc_id)
    assert (doc.version, doc.deleted, doc.chunk_count, doc.title, doc.privacy_class, doc.acl,
            doc.lineage, doc.metadata, doc.content_type) == (
        1, False, 3, "Policy", "confidential", ["team:a", "team:b"], {"commit": "abc"},
        {"owner": "ana"}, "text/markdown")


def test_replay_is_duplicate_and_older_or_different_same_version_is_stale(stack):
    doc_id, texts = _doc_id(), _texts(2)
    _apply(stack, _upsert(doc_id, 5, texts), _vectors(texts))
    before = _chunks(stack, doc_id)
    replay = _apply(stack, _upsert(doc_id, 5, texts))
    assert (replay.state, replay.stored_version, replay.chunks_inserted) == ("duplicate", 5, 0)
    other = _texts(1)
    assert _apply(stack, _upsert(doc_id, 5, other), _vectors(other)).state == "stale_ignored"
    older = _apply(stack, _upsert(doc_id, 4, other), _vectors(other))
    assert (older.state, older.stored_version) == ("stale_ignored", 5)
    assert _chunks(stack, doc_id) == before
    assert _document(stack, doc_id).version == 5


def test_new_version_replaces_only_the_changed_chunk(stack):
    doc_id, texts = _doc_id(), _texts(3)
    _apply(stack, _upsert(doc_id, 1, texts), _vectors(texts))
    before = _chunks(stack, doc_id)
    edited = [texts[0], "a brand new middle paragraph", texts[2]]
    result = _apply(stack, _upsert(doc_id, 2, edited), _vectors(edited[1:2]))
    assert (result.state, result.chunks_inserted, result.chunks_removed) == ("indexed", 1, 1)
    after = _chunks(stack, doc_id)
    assert [after[0], after[2]] == [before[0], before[2]]  # same id, text and created_at
    assert after[1][1:4] == (1, _sha(edited[1]), edited[1])
    assert after[1][0] != before[1][0] and after[1][4] > before[0][4]
    assert _document(stack, doc_id).version == 2


def test_reorder_updates_ordinals_without_reinserting(stack):
    doc_id, texts = _doc_id(), _texts(3)
    _apply(stack, _upsert(doc_id, 1, texts), _vectors(texts))
    before = {r[0]: r for r in _chunks(stack, doc_id)}
    result = _apply(stack, _upsert(doc_id, 2, texts[::-1]))  # no vectors needed
    assert (result.chunks_inserted, result.chunks_removed, result.chunks_total) == (0, 0, 3)
    after = _chunks(stack, doc_id)
    assert [r[3] for r in after] == texts[::-1]
    assert [r[4] for r in after] == [before[r[0]][4] for r in after]


def test_delete_keeps_a_versioned_tombstone_that_blocks_older_upserts(stack):
    doc_id, texts = _doc_id(), _texts(4)
    _apply(stack, _upsert(doc_id, 3, texts), _vectors(texts))
    result = _apply(stack, _delete(doc_id, 7))
    assert (result.state, result.chunks_removed) == ("deleted", 4)
    assert _chunks(stack, doc_id) == []
    doc = _document(stack, doc_id)
    assert (doc.deleted, doc.version, doc.chunk_count) == (True, 7, 0)
    for version in (6, 7):
        late = _apply(stack, _upsert(doc_id, version, texts), _vectors(texts))
        assert (late.state, late.stored_version) == ("stale_ignored", 7)
    assert _chunks(stack, doc_id) == []
    revived = _apply(stack, _upsert(doc_id, 8, texts[:1]), _vectors(texts[:1]))
    assert (revived.state, revived.chunks_inserted) == ("indexed", 1)
    assert _document(stack, doc_id).deleted is False


def test_tombstone_of_an_unknown_document_writes_nothing(stack):
    doc_id = _doc_id()
    result = _apply(stack, _delete(doc_id, None))
    assert (result.state, result.chunks_removed) == ("deleted", 0)
    assert _document(stack, doc_id) is None


def test_tombstone_of_a_known_document_keeps_its_version(stack):
    doc_id, texts = _doc_id(), _texts(2)
    _apply(stack, _upsert(doc_id, 9, texts), _vectors(texts))
    assert _apply(stack, _delete(doc_id, None)).chunks_removed == 2
    doc = _document(stack, doc_id)
    assert (doc.deleted, doc.version) == (True, 9)


def test_an_error_after_apply_rolls_the_swap_back(stack):
    doc_id, texts = _doc_id(), _texts(3)
    _apply(stack, _upsert(doc_id, 1, texts), _vectors(texts))
    before = _chunks(stack, doc_id)
    replacement = _texts(2)
    with pytest.raises(RuntimeError, match="crash after apply"), stack.engine.begin() as conn:
        assert apply_work(conn, _upsert(doc_id, 2, replacement), _vectors(replacement),
                          MODEL).state == "indexed"
        raise RuntimeError("crash after apply")
    assert _chunks(stack, doc_id) == before
    assert _document(stack, doc_id).version == 1


def test_cache_round_trip_first_write_wins_and_models_are_separate(stack):
    texts = _texts(3)
    vectors = _vectors(texts)
    with stack.engine.begin() as conn:
        cache_embeddings(conn, vectors, MODEL)
        cache_embeddings(conn, {_sha(texts[0]): _unit()}, MODEL)  # ON CONFLICT DO NOTHING
    with stack.engine.begin() as conn:
        found = cached_embeddings(conn, [*vectors, _sha("never cached"), _sha(texts[0])], MODEL)
        assert cached_embeddings(conn, vectors, "another-model") == {}
        assert cached_embeddings(conn, [], MODEL) == {}
    assert set(found) == set(vectors)
    for content_hash, vector in vectors.items():
        assert found[content_hash].dtype == np.float32
        assert np.allclose(found[content_hash], vector)


def test_record_status_counts_stale_events_without_overwriting(stack):
    doc_id, texts = _doc_id(), _texts(3)
    work = _upsert(doc_id, 2, texts)
    with stack.engine.begin() as conn:
        record_status(conn, work, apply_work(conn, work, _vectors(texts), MODEL), 2, 15.0)
    row = stack.status(doc_id)
    assert (row.last_version, row.state, row.chunks_total, row.chunks_embedded,
            row.chunks_reused, row.chunks_removed, row.stale_events, row.lag_ms) == (
        2, "indexed", 3, 2, 1, 0, 0, 15.0)
    old = _upsert(doc_id, 1, texts[:1])
    with stack.engine.begin() as conn:
        record_status(conn, old, apply_work(conn, old, {}, MODEL), 0, None)
    row = stack.status(doc_id)
    assert (row.last_version, row.state, row.chunks_total, row.stale_events, row.lag_ms) == (
        2, "indexed", 3, 1, 15.0)


def test_new_version_without_chunks_empties_the_document(stack):
    # An upsert whose content normalises to nothing (e.g. an empty HTML page) has no chunks.
    doc_id, texts = _doc_id(), _texts(2)
    _apply(stack, _upsert(doc_id, 1, texts), _vectors(texts))
    result = _apply(stack, _upsert(doc_id, 2, []))
    assert (result.state, result.chunks_total, result.chunks_removed) == ("indexed", 0, 2)
    assert _chunks(stack, doc_id) == []
    doc = _document(stack, doc_id)
    assert (doc.version, doc.deleted, doc.chunk_count) == (2, False, 0)
