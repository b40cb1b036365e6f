"""The rag worker (services/rag/app.py) on the real broker and database: poison screened
requests on ``rag.screened`` (not JSON, the wrong type, too large) are dead-lettered with the
original payload, the requester they name gets an error reply through the output stage instead
of waiting, the answer cache is left as it was, and the same process answers the next question.

Unsigned, forged, altered and replayed screened requests are in tests/e2e/test_trust_boundary.py
and not repeated here. Ingest and embedder index the document; guardrails and rag run as this
module's own workers (the session's, if any, are swapped out and back).
"""

from __future__ import annotations

import json

import pytest

from services.common.events import Principal, RagFilters, RagOptions, RagRequest
from services.common.rpc import ReplyClient, new_request_id
from services.common.topics import RAG_REQUESTS_DLQ, RAG_SCREENED
from services.rag.config import MAX_REQUEST_BYTES
from tests.support.documents import change, unique_prefix
from tests.support.guarded import records_for, swapped_workers
from tests.support.keys import key_for
from tests.support.poison import assert_dead_lettered, worker_pid

pytestmark = pytest.mark.integration

READER = Principal(id="poison-reader", groups=["employees"], clearance="internal")
FACT = ("The Zephyr cooling loop was designed by Ada Okafor in 1998. It circulates heavy water "
        "through three heat exchangers and is inspected every spring by the plant engineers.")
QUESTION = "Who designed the Zephyr cooling loop?"


@pytest.fixture(scope="module")
def prefix(stack, workers):
    """Indexed before this module's rag worker starts, so the worker's cache invalidation for
    it is behind it before the first question."""
    prefix = unique_prefix("rag-poison")
    document = change(f"{prefix}zephyr", 1, [FACT])
    stack.publish([document])
    stack.wait_indexed({document.doc_id: 1})
    return prefix


@pytest.fixture(scope="module")
def client(stack, otlp_receiver, prefix):
    env = {"CUSTOMLLM_OTEL_EXPORTER": "otlp", "CUSTOMLLM_OTEL_ENDPOINT": otlp_receiver.endpoint,
           "CUSTOMLLM_MAX_NEW_TOKENS": "48"}
    with swapped_workers(stack, ("guardrails", "rag"), env, restore_env=env):
        reply_client = ReplyClient(stack.settings.kafka_bootstrap, client_id="tests-rag-poison")
        yield reply_client
        reply_client.close()


def _ask(client, prefix: str):
    return client.request(RagRequest(
        request_id=new_request_id(), reply_to=client.reply_topic, question=QUESTION,
        credential=key_for(READER), options=RagOptions(
            use_cache=True, filters=RagFilters(doc_id_prefix=prefix))), timeout_s=240)


def _cached(stack) -> list[tuple]:
    """The cache entries for the question, without the hit counter a cached answer bumps."""
    return [tuple(r) for r in stack.query(
        "SELECT cache_key, context_key, reply, doc_versions, doc_ids, created_at, expires_at "
        "FROM answer_cache WHERE question = :q ORDER BY cache_key", q=QUESTION)]


def test_poison_screened_requests_are_dead_lettered_and_the_worker_answers_on(
        stack, client, prefix):
    first = _ask(client, prefix)
    assert first.status == "ok" and not first.cached, first.error
    assert {c.doc_id for c in first.citations} == {f"{prefix}zephyr"}
    cached_before = _cached(stack)
    assert len(cached_before) == 1
    pid = worker_pid(stack, "rag")
    [screened] = records_for(stack, RAG_SCREENED, first.request_id)

    ids = {name: new_request_id() for name in ("json", "type", "size")}
    # The guardrail's own screened request, retargeted: each copy names a requester and asks
    # the cached question with more clearance than the reader has.
    claim = {**screened, "reply_to": client.reply_topic,
             "principal": {"id": "mallory", "groups": ["security-team"],
                           "clearance": "restricted"}}
    poisons = {
        "json": b'{"request_id": "' + ids["json"].encode() + b'", "reply_to": "'
                + client.reply_topic.encode() + b'", "question": "Who',
        "type": json.dumps({**claim, "request_id": ids["type"],
                            "options": {**claim["options"], "top_k": "ten"}}).encode(),
        "size": json.dumps({**claim, "request_id": ids["size"],
                            "history": [{"role": "user",
                                         "content": "x" * MAX_REQUEST_BYTES}]}).encode(),
    }
    replies = {name: client.expect(ids[name]) for name in ("type", "size")}
    stack.publish_raw([(ids[name].encode(), value) for name, value in poisons.items()],
                      topic=RAG_SCREENED)

    for name, error_type in (("json", "malformed_json"), ("type", "schema_violation"),
                             ("size", "too_large")):
        [record] = records_for(stack, RAG_REQUESTS_DLQ, ids[name], timeout_s=60)
        assert_dead_lettered(record, service="rag", source=RAG_SCREENED, value=poisons[name],
                             error_type=error_type)
    for name, error_type in (("type", "schema_violation"), ("size", "too_large")):
        reply = replies[name].result(timeout=120)
        assert (reply.status, reply.error_code) == ("error", error_type), reply.error
        assert reply.answer == "" and not reply.citations
    # The replies were the worker's last sends for the poison: the cache is as it was.
    assert _cached(stack) == cached_before

    again = _ask(client, prefix)
    assert again.status == "ok" and again.cached, again.error
    assert (again.answer, again.citations) == (first.answer, first.citations)
    assert worker_pid(stack, "rag") == pid, "a poison request restarted the rag worker"
