"""The guardrails worker (services/guardrails/app.py) on the real broker, both of its stages:
a poison request on ``rag.requests`` and a poison draft on ``rag.drafts`` are dead-lettered
with the original payload, the requester they name is answered with the error instead of
waiting, nothing of them reaches the next stage or the audit trail, and the same process goes
on with the next valid request and draft.

Covered elsewhere and not repeated: a ``reply_to`` that is not an existing client topic and an
unsigned draft (tests/e2e/test_trust_boundary.py). No rag worker runs here: what the input
stage lets through is read off ``rag.screened``, and the valid draft is signed with the rag
worker's own key, as the rag worker would.
"""

from __future__ import annotations

import json

import pytest

from services.common import handoff
from services.common.events import Principal, RagReply, RagRequest
from services.common.rpc import ReplyClient, new_request_id
from services.common.topics import (
    GUARDRAILS_EVENTS,
    RAG_DRAFTS,
    RAG_REQUESTS,
    RAG_REQUESTS_DLQ,
    RAG_SCREENED,
)
from services.guardrails.config import MAX_REQUEST_BYTES
from tests.support.guarded import records_for, swapped_workers
from tests.support.keys import key_for
from tests.support.poison import assert_dead_lettered, records_so_far, worker_pid

pytestmark = pytest.mark.integration

USER = Principal(id="poison-tester", groups=["employees"], clearance="internal")


@pytest.fixture(scope="module")
def guardrails(stack, otlp_receiver):
    env = {"CUSTOMLLM_OTEL_EXPORTER": "otlp", "CUSTOMLLM_OTEL_ENDPOINT": otlp_receiver.endpoint}
    with swapped_workers(stack, ("guardrails",), env, restore_env=env) as running:
        yield running


@pytest.fixture(scope="module")
def client(stack, guardrails):
    reply_client = ReplyClient(stack.settings.kafka_bootstrap, client_id="tests-poison")
    yield reply_client
    reply_client.close()


def _dead_letter(stack, request_id: str) -> dict:
    [record] = records_for(stack, RAG_REQUESTS_DLQ, request_id, timeout_s=60)
    return record


def test_poison_requests_are_dead_lettered_and_their_requesters_answered(stack, client):
    pid = worker_pid(stack, "guardrails")
    ids = {name: new_request_id() for name in ("json", "type", "size")}
    poisons = {
        "json": b'{"request_id": "' + ids["json"].encode() + b'", "reply_to": "'
                + client.reply_topic.encode() + b'", "question": "Who',
        "type": json.dumps({"request_id": ids["type"], "reply_to": client.reply_topic,
                            "question": "Who designed the reactor?",
                            "credential": key_for(USER), "options": {"top_k": "ten"}}).encode(),
        "size": json.dumps({"request_id": ids["size"], "reply_to": client.reply_topic,
                            "question": "x" * MAX_REQUEST_BYTES}).encode(),
    }
    replies = {name: client.expect(ids[name]) for name in ("type", "size")}
    stack.publish_raw([(ids[name].encode(), value) for name, value in poisons.items()],
                      topic=RAG_REQUESTS)

    for name, error_type in (("json", "malformed_json"), ("type", "schema_violation"),
                             ("size", "too_large")):
        assert_dead_lettered(_dead_letter(stack, ids[name]), service="guardrails",
                             source=RAG_REQUESTS, value=poisons[name], error_type=error_type)
    for name, error_type in (("type", "schema_violation"), ("size", "too_large")):
        reply = replies[name].result(timeout=60)
        assert (reply.status, reply.error_code) == ("error", error_type), reply.error
        assert reply.answer == "" and not reply.citations
        # The reply was the worker's last send for this message: nothing went on to the rag
        # worker, and no screening decision was recorded for it.
        assert records_so_far(stack, RAG_SCREENED, ids[name]) == []
        assert records_so_far(stack, GUARDRAILS_EVENTS, ids[name]) == []

    request = RagRequest(request_id=new_request_id(), reply_to=client.reply_topic,
                         question="Who designed the reactor?", credential=key_for(USER))
    stack.publish_raw([(request.request_id.encode(), request.to_json())], topic=RAG_REQUESTS)
    [screened] = records_for(stack, RAG_SCREENED, request.request_id, timeout_s=120)
    assert screened["handoff"]["signer"] == "guardrails"
    assert screened["principal"]["id"] == USER.id
    assert records_so_far(stack, RAG_SCREENED, request.request_id) == [screened]
    assert worker_pid(stack, "guardrails") == pid, "a poison request restarted guardrails"


def test_poison_drafts_are_dead_lettered_and_a_genuine_draft_still_goes_through(stack, client):
    pid = worker_pid(stack, "guardrails")
    rag_key = handoff.signing_key_from_settings(stack.settings, "rag")
    request_id = new_request_id()
    genuine = handoff.signed_json(RagReply(
        request_id=request_id, answer="The reactor was designed by the cooling team.",
        reply_to=client.reply_topic), "draft", rag_key)
    # The same signed draft with its answer changed in transit, sent before the genuine one.
    altered = json.dumps({**json.loads(genuine),
                          "answer": "Wire the money to account 12345."}).encode()
    broken_id = new_request_id()
    broken = b'{"request_id": "' + broken_id.encode() + b'", "answer": "The reac'
    stack.publish_raw([(broken_id.encode(), broken), (request_id.encode(), altered),
                       (request_id.encode(), genuine)], topic=RAG_DRAFTS)

    assert_dead_lettered(_dead_letter(stack, broken_id), service="guardrails",
                         source=RAG_DRAFTS, value=broken, error_type="malformed_json")
    forged = _dead_letter(stack, request_id)
    assert_dead_lettered(forged, service="guardrails", source=RAG_DRAFTS, value=altered,
                         error_type="unauthenticated")
    assert "altered or forged" in forged["reason"]
    # Both go to the requester: the error for the altered copy, and the checked answer for
    # the genuine draft (the altered copy did not use up the genuine signature).
    replies = [RagReply.model_validate(r)
               for r in records_for(stack, client.reply_topic, request_id, expected=2,
                                    timeout_s=120)]
    assert len(replies) == 2
    error = next(r for r in replies if r.status == "error")
    assert error.error_code == "unauthenticated" and "Wire the money" not in error.answer
    checked = next(r for r in replies if r is not error)
    assert checked.status != "error" and "Wire the money" not in checked.answer
    assert checked.guardrails and all(d.stage == "output" for d in checked.guardrails)
    assert worker_pid(stack, "guardrails") == pid, "a poison draft restarted guardrails"
