"""The embedder worker (services/embedder/app.py) on the real broker and database: poison
messages in a batch are dead-lettered one by one with their reason, the rest of the batch is
indexed, and the worker keeps running."""

from __future__ import annotations

import json
import os

import pytest

from services.common.topics import CHUNKS_EMBED, CHUNKS_EMBED_DLQ
from tests.support.documents import change, unique_prefix
from tests.support.stack import wait_for

pytestmark = pytest.mark.integration

PARAGRAPH = ("The embedder reads one chunk set per document version and swaps it into the "
             "index in a single transaction, so readers never see half a document.")


def _work_of(stack, doc_id: str) -> dict:
    [(_, value)] = stack.read_topic(CHUNKS_EMBED, lambda k, _v: k == doc_id.encode(), 1)
    return json.loads(value)


def test_poison_work_items_are_dead_lettered_and_the_batch_goes_on(stack, workers):
    prefix = unique_prefix("embedder-poison")
    template = change(f"{prefix}template", 1, [PARAGRAPH])
    stack.publish([template])
    stack.wait_indexed({template.doc_id: 1})
    work = _work_of(stack, template.doc_id)

    # Postgres refuses NUL characters in text: a well-formed work item that no retry can store.
    refused = {**work, "doc_id": f"{prefix}nul", "version": 1,
               "chunks": [{**c, "text": c["text"] + "\u0000"} for c in work["chunks"]]}
    good = change(f"{prefix}good", 1, [PARAGRAPH + " It also reuses cached embeddings."])
    stack.publish_raw([
        (f"{prefix}json".encode(), b'{"doc_id": '),
        (f"{prefix}nul".encode(), json.dumps(refused).encode()),
        (f"{prefix}schema".encode(), json.dumps({**work, "doc_id": f"{prefix}schema",
                                                 "version": "one"}).encode()),
    ], topic=CHUNKS_EMBED)
    stack.publish([good])
    stack.wait_indexed({good.doc_id: 1})

    records = stack.read_topic(CHUNKS_EMBED_DLQ, lambda k, _v: k is not None and
                               k.decode().startswith(prefix), expected=3)
    by_key = {k.decode(): json.loads(v) for k, v in records}
    assert by_key[f"{prefix}json"]["error_type"] == "malformed_json"
    assert by_key[f"{prefix}schema"]["error_type"] == "schema_violation"
    assert by_key[f"{prefix}nul"]["error_type"] == "processing_error"
    assert all(r["service"] == "embedder" and r["original_topic"] == CHUNKS_EMBED
               for r in by_key.values())
    assert stack.indexed_versions([f"{prefix}nul", f"{prefix}schema"]) == {}
    assert stack.indexed_versions([template.doc_id]) == {template.doc_id: 1}
    pid = workers.pids["embedder"]
    wait_for(lambda: _alive(pid), 5, what="the embedder to still be running")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
