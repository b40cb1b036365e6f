"""The ingest worker (services/ingest/app.py) on the real broker and database: poison events
for a document already in the index are dead-lettered whole, the document's status says why
when the event still names its version, the stored rows stay as they were, and the same worker
process goes on to index the document's next version.

The catalogue of malformed inputs (undecodable bytes, missing fields, wrong types, oversized
documents) and their error types is in tests/e2e/test_ingestion_flow.py; the failure status of
a corrupt PDF in tests/e2e/test_sources_documents.py. This test is about one stored document
and the worker itself.
"""

from __future__ import annotations

import json

import pytest

from services.common.topics import DOCS_CHANGES, DOCS_CHANGES_DLQ
from tests.support.documents import change, expected_hashes, paragraphs, unique_prefix
from tests.support.guarded import records_for
from tests.support.poison import assert_dead_lettered, worker_pid
from tests.support.stack import wait_for

pytestmark = pytest.mark.integration


def _document(stack, doc_id: str) -> tuple:
    return tuple(stack.query("SELECT * FROM documents WHERE doc_id = :d", d=doc_id)[0])


def _status(stack, doc_id: str, state: str, version: int):
    row = stack.status(doc_id)
    return row if row is not None and (row.state, row.last_version) == (state, version) else None


def test_poison_for_a_stored_document_is_dead_lettered_and_its_rows_stay(stack, workers):
    doc_id = unique_prefix("ingest-poison") + "handbook"
    stack.publish([change(doc_id, 1, paragraphs(61, 3))])
    stack.wait_indexed({doc_id: 1})
    chunks_before, document_before = stack.chunk_rows([doc_id]), _document(stack, doc_id)
    pid = worker_pid(stack, "ingest")
    assert pid is not None

    truncated = b'{"doc_id": "' + doc_id.encode() + b'", "version": 2, "content": "a'
    # Valid JSON and schema, naming a newer version, but not ingestible: its file is outside
    # the roots ingest may read.
    unreadable = json.dumps({"doc_id": doc_id, "version": 3, "op": "upsert",
                             "content_ref": "../../etc/passwd", "source": "tests"}).encode()
    stack.publish_raw([(doc_id.encode(), truncated), (doc_id.encode(), unreadable)])

    json_record, unreadable_record = records_for(stack, DOCS_CHANGES_DLQ, doc_id, expected=2,
                                                 timeout_s=60)
    assert_dead_lettered(json_record, service="ingest", source=DOCS_CHANGES, value=truncated,
                         error_type="malformed_json")
    assert_dead_lettered(unreadable_record, service="ingest", source=DOCS_CHANGES,
                         value=unreadable, error_type="forbidden")
    assert unreadable_record["offset"] == json_record["offset"] + 1  # one partition, in order
    # The event that still names its version is that version's failure, with the reason; the
    # one that names nothing readable leaves no status behind.
    failed = wait_for(lambda: _status(stack, doc_id, "failed", 3), 60,
                      what="the failed status of version 3")
    assert failed.error.startswith("forbidden: ") and "etc/passwd" in failed.error
    assert stack.chunk_rows([doc_id]) == chunks_before
    assert _document(stack, doc_id) == document_before

    after = change(doc_id, 4, paragraphs(62, 2))
    stack.publish([after])
    stack.wait_indexed({doc_id: 4})
    assert [row[2] for row in stack.chunk_rows([doc_id])] == expected_hashes(after.content)
    assert worker_pid(stack, "ingest") == pid, "the poison must not have restarted ingest"
