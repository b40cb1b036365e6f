"""Whole ingestion flows on the real stack: publish → ingest → embedder → Postgres."""

from __future__ import annotations

import json

import pytest

from services.common.events import DocChange
from services.common.topics import DOCS_CHANGES_DLQ
from services.ingest.config import ingest_settings
from tests.support.documents import change, expected_hashes, paragraphs, unique_prefix

pytestmark = pytest.mark.e2e


def test_fifty_documents_are_queryable_with_correct_chunk_counts(stack, workers):
    prefix = unique_prefix("fifty")
    changes = [change(f"{prefix}{i}", 1, paragraphs(i, 2 + i % 5)) for i in range(50)]
    stack.publish(changes)
    stack.wait_indexed({c.doc_id: 1 for c in changes})

    for c in changes:
        rows = stack.query("SELECT content_hash FROM chunks WHERE doc_id = :d ORDER BY ordinal",
                           d=c.doc_id)
        assert [r[0] for r in rows] == expected_hashes(c.content)
    counts = stack.query("SELECT count(*), count(*) FILTER (WHERE embedding IS NULL) FROM chunks "
                         "WHERE doc_id LIKE :p", p=prefix + "%")[0]
    assert counts[0] == sum(len(expected_hashes(c.content)) for c in changes)
    assert counts[1] == 0
    # Queryable: nearest-neighbour search over the HNSW index finds a document by its own text.
    probe = changes[7]
    hit = stack.query(
        "SELECT c.doc_id FROM chunks c ORDER BY c.embedding <=> "
        "(SELECT embedding FROM chunks WHERE doc_id = :d AND ordinal = 0) LIMIT 1", d=probe.doc_id)
    assert hit[0][0] == probe.doc_id
    # Lexical search works on the generated tsvector column.
    tag = probe.content.split("]")[0].lstrip("[")
    lexical = stack.query("SELECT doc_id FROM chunks WHERE tsv @@ plainto_tsquery('english', :q)",
                          q=tag)
    assert (probe.doc_id,) in [tuple(r) for r in lexical]


def test_republish_unchanged_embeds_nothing(stack, workers):
    doc_id = unique_prefix("same") + "doc"
    paras = paragraphs(101, 12)
    stack.publish([change(doc_id, 1, paras)])
    stack.wait_indexed({doc_id: 1})
    before = stack.chunk_rows([doc_id])
    stack.publish([change(doc_id, 2, paras)])
    stack.wait_indexed({doc_id: 2})
    status = stack.status(doc_id)
    assert status.chunks_embedded == 0
    assert status.chunks_reused == status.chunks_total == len(before)
    assert stack.chunk_rows([doc_id]) == before


def test_editing_one_paragraph_of_a_100_chunk_document_reembeds_one_chunk(stack, workers):
    doc_id = unique_prefix("edit") + "big"
    paras = paragraphs(202, 100, words=60)
    stack.publish([change(doc_id, 1, paras)])
    stack.wait_indexed({doc_id: 1})
    assert stack.status(doc_id).chunks_total == 100

    edited = list(paras)
    edited[50] = edited[50] + " an appended sentence changes this paragraph"
    stack.publish([change(doc_id, 2, edited)])
    stack.wait_indexed({doc_id: 2})
    status = stack.status(doc_id)
    assert (status.chunks_total, status.chunks_embedded, status.chunks_removed) == (100, 1, 1)

    inserted = edited[:2] + paragraphs(203, 1, words=60) + edited[2:]
    stack.publish([change(doc_id, 3, inserted)])
    stack.wait_indexed({doc_id: 3})
    status = stack.status(doc_id)
    assert status.chunks_total == 101
    assert status.chunks_embedded <= 2
    hashes = [r[2] for r in stack.chunk_rows([doc_id])]
    assert hashes == expected_hashes("\n\n".join(inserted))


def test_delete_removes_every_chunk_and_tombstone_too(stack, workers):
    prefix = unique_prefix("del")
    a, b = f"{prefix}a", f"{prefix}b"
    stack.publish([change(a, 1, paragraphs(7, 6)), change(b, 1, paragraphs(8, 6))])
    stack.wait_indexed({a: 1, b: 1})
    stack.publish([DocChange(doc_id=a, version=2, op="delete")])
    stack.publish_raw([(b.encode(), None)])  # a Kafka tombstone
    stack.wait_indexed({a: 2})
    from tests.support.stack import wait_for

    wait_for(lambda: stack.query("SELECT deleted FROM documents WHERE doc_id = :d", d=b)[0][0],
             60, what="tombstone delete")
    assert stack.chunk_rows([a, b]) == []
    # An older upsert arriving after the delete does not bring the document back.
    stack.publish([change(a, 1, paragraphs(7, 6))])
    from tests.support.stack import wait_for as wait

    wait(lambda: stack.status(a).stale_events >= 1, 60, what="stale count")
    assert stack.chunk_rows([a]) == []


def test_older_version_after_newer_changes_nothing(stack, workers):
    doc_id = unique_prefix("order") + "doc"
    stack.publish([change(doc_id, 5, paragraphs(31, 4))])
    stack.wait_indexed({doc_id: 5})
    before = stack.chunk_rows([doc_id])
    stack.publish([change(doc_id, 3, paragraphs(32, 4)), change(doc_id, 5, paragraphs(33, 4))])
    from tests.support.stack import wait_for

    wait_for(lambda: stack.status(doc_id).stale_events >= 2, 60, what="stale events counted")
    assert stack.chunk_rows([doc_id]) == before
    assert stack.query("SELECT version FROM documents WHERE doc_id = :d", d=doc_id)[0][0] == 5


def test_bad_messages_go_to_the_dlq_and_the_worker_keeps_going(stack, workers):
    prefix = unique_prefix("dlq")
    good_before = change(f"{prefix}good", 1, paragraphs(41, 3))
    stack.publish([good_before])
    stack.wait_indexed({good_before.doc_id: 1})
    stored = stack.chunk_rows([good_before.doc_id])

    huge = change(f"{prefix}huge", 1, ["x " * (ingest_settings().max_document_bytes // 2 + 10)])
    schema_bad = {"doc_id": f"{prefix}nover", "op": "upsert", "content": "no version"}
    wrong_type = {"doc_id": f"{prefix}wrongtype", "version": "7", "op": "upsert", "content": "x"}
    overwrite = {"doc_id": good_before.doc_id, "version": 99, "op": "upsert", "content": 42}
    stack.publish_raw([
        (f"{prefix}json".encode(), b'{"doc_id": "broken", '),
        (f"{prefix}bytes".encode(), b"\xff\xfe\x00garbage"),
        (f"{prefix}nover".encode(), json.dumps(schema_bad).encode()),
        (f"{prefix}wrongtype".encode(), json.dumps(wrong_type).encode()),
        (good_before.doc_id.encode(), json.dumps(overwrite).encode()),
        (f"{prefix}huge".encode(), huge.to_json()),
        (f"{prefix}html".encode(), json.dumps({"doc_id": f"{prefix}html", "version": 1,
                                               "op": "upsert", "content": "<p>x</p>",
                                               "content_type": "application/pdf"}).encode()),
    ])
    good_after = change(f"{prefix}after", 1, paragraphs(42, 3))
    stack.publish([good_after])
    stack.wait_indexed({good_after.doc_id: 1})

    records = stack.read_topic(DOCS_CHANGES_DLQ,
                               lambda k, v: k is not None and k.decode().startswith(prefix) or
                               (k == good_before.doc_id.encode()), expected=7)
    by_key = {k.decode(): json.loads(v) for k, v in records}
    assert by_key[f"{prefix}json"]["error_type"] == "malformed_json"
    assert by_key[f"{prefix}bytes"]["error_type"] == "undecodable"
    assert by_key[f"{prefix}bytes"]["payload_encoding"] == "base64"
    assert by_key[f"{prefix}nover"]["error_type"] == "schema_violation"
    assert "version" in by_key[f"{prefix}nover"]["reason"]
    assert by_key[f"{prefix}wrongtype"]["error_type"] == "schema_violation"
    assert by_key[good_before.doc_id]["error_type"] == "schema_violation"
    assert by_key[f"{prefix}huge"]["error_type"] == "too_large"
    assert by_key[f"{prefix}html"]["error_type"] == "schema_violation"
    for record in by_key.values():
        assert record["original_topic"] == "docs.changes" and record["reason"]
    # Nothing stored was touched by the bad messages.
    assert stack.chunk_rows([good_before.doc_id]) == stored
    assert stack.query("SELECT count(*) FROM documents WHERE doc_id LIKE :p",
                       p=prefix + "%")[0][0] == 2
