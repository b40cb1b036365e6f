"""The audit recorder (services/audit/app.py and handlers.py) on the real broker and Postgres,
running as its own Kafka identity (a subprocess, as `customllm up` runs it): the query-path
topics become one audit record, feedback sent straight to Kafka is attributed to whoever its
credential proves (or dead-lettered with the reason), an ungrounded answer becomes a candidate
example, and an unreadable record is logged while the recorder goes on.

Feedback posted to the gateway (POST /v1/feedback), which the recorder also decides on, is
tests/integration/gateway/test_feedback.py; the helpers both use are tests/support/audit.py."""

from __future__ import annotations

import json

import pytest

from services.common import topics as t
from services.common.feedback import FeedbackEvent
from tests.support.audit import (
    ALICE,
    BOB,
    answered,
    audit_recorder,
    candidates_for,
    dlq_for,
    feedback_rows,
    publish,
)
from tests.support.keys import key_for
from tests.support.stack import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def recorder(stack):
    with audit_recorder(stack) as running:
        yield running


def test_the_query_path_topics_become_one_audit_record(stack, recorder):
    rid = answered(stack, ALICE)
    row = stack.query("SELECT * FROM answer_audit WHERE request_id = :r", r=rid)[0]
    assert (row.principal_id, row.question, row.answer) == ("alice-fb", "How many days of leave?",
                                                             "25 days [1]")
    assert (row.template_version, row.adapter, row.adapter_version, row.trace_id) == (
        "qa@v1", "support", "v2", "ab" * 16)
    assert row.retrieved[0]["doc_id"] == "fb-doc" and row.retrieved[0]["doc_version"] == 3
    assert row.retrieved[1]["privacy_class"] == "confidential"
    assert row.policy_version == "default@1#abc"
    decisions = stack.query("SELECT check_name, action, score FROM guardrail_decisions "
                            "WHERE request_id = :r", r=rid)
    assert [(d.check_name, d.action) for d in decisions] == [("grounding", "allow")]


def test_over_kafka_the_feedbacks_author_is_whoever_the_credential_proves(stack, recorder):
    rid = answered(stack, ALICE)
    forged = FeedbackEvent(request_id=rid, rating=-1, credential=key_for(BOB))
    publish(stack, (t.RAG_FEEDBACK, rid, forged.to_json()))
    dead = dlq_for(stack, rid)
    assert dead["error_type"] == "forbidden" and dead["payload"] is None  # no credential kept
    genuine = FeedbackEvent(request_id=rid, rating=1, comment="thanks",
                            credential=key_for(ALICE))
    publish(stack, (t.RAG_FEEDBACK, rid, genuine.to_json()))
    wait_for(lambda: feedback_rows(stack, rid), 30, what="the Kafka feedback row")
    assert [(r.principal_id, r.rating, r.channel) for r in feedback_rows(stack, rid)] == [
        ("alice-fb", 1, "kafka")]


@pytest.mark.parametrize("mutate, error_type", [
    (lambda p: {**p, "principal": {"id": "alice-fb"}}, "schema_violation"),
    (lambda p: {**p, "credential": "cllm_not-a-key"}, "unauthenticated"),
])
def test_over_kafka_a_declared_principal_or_a_bad_credential_is_dead_lettered(
        stack, recorder, mutate, error_type):
    rid = answered(stack, ALICE)
    payload = mutate(FeedbackEvent(request_id=rid, rating=-1,
                                   credential=key_for(ALICE)).to_dict())
    publish(stack, (t.RAG_FEEDBACK, rid, json.dumps(payload).encode()))
    assert dlq_for(stack, rid)["error_type"] == error_type
    assert feedback_rows(stack, rid) == []


def test_an_ungrounded_answer_becomes_a_candidate_on_its_own(stack, recorder):
    rid = answered(stack, ALICE, grounding="flag", question="Who approves travel?")
    wait_for(lambda: candidates_for(stack, rid), 90, what="the grounding candidate")
    (example,) = candidates_for(stack, rid)
    assert (example.source, example.tags) == ("grounding", ["grounding", "needs-correction"])
    assert example.lineage["grounding_score"] == pytest.approx(0.12)


def test_an_unreadable_record_is_logged_and_the_recorder_goes_on(stack, recorder):
    publish(stack, (t.RAG_DRAFTS, "garbage", b"{not json"),
            (t.GUARDRAILS_EVENTS, "garbage", json.dumps({"event_id": "x"}).encode()))
    rid = answered(stack, ALICE, question="Still recording?")
    assert stack.query("SELECT question FROM answer_audit WHERE request_id = :r",
                       r=rid)[0].question == "Still recording?"
    log = (stack.state / "logs" / "audit.log").read_text()
    assert "unreadable rag.drafts record" in log
