"""Feedback on answers, over HTTP and over Kafka, on the real broker and Postgres, with the
audit recorder running as its own Kafka identity (a subprocess, as `customllm up` runs it).

The answers themselves are put on the query-path topics by the test (as the broker's admin),
exactly as the guardrails and rag stages write them, so no model needs to load."""

from __future__ import annotations

import json
import uuid

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from services.common import topics as t
from services.common.config import get_settings
from services.common.events import (
    Citation,
    DraftEvidence,
    GuardrailEvent,
    Principal,
    RagReply,
    RagRequest,
    RetrievedChunk,
    Screening,
)
from services.common.feedback import FeedbackEvent
from services.common.producer import flush, make_producer, send
from services.gateway.app import create_app
from tests.support.keys import bearer, key_for
from tests.support.stack import Workers, wait_for

pytestmark = pytest.mark.integration
ALICE = Principal(id="alice-fb", groups=["employees"], clearance="internal")
BOB = Principal(id="bob-fb", groups=["employees"], clearance="internal")
STEWARD = Principal(id="sam-fb", groups=["stewards"], clearance="confidential")


@pytest.fixture(scope="module")
def recorder(stack):
    running = Workers(stack, {}, names=("audit",))
    running.start_all()
    yield running
    running.stop_all()


@pytest.fixture(scope="module")
def client(stack, recorder):
    with TestClient(create_app(get_settings())) as test_client:
        yield test_client


def _publish(stack, *records: tuple[str, str, bytes]) -> None:
    producer, errors = make_producer(stack.settings.kafka_bootstrap, "tests-feedback"), []
    for topic, key, value in records:
        send(producer, topic, key, value, errors=errors)
    flush(producer, errors)


def answered(stack, asker: Principal, grounding: str = "allow",
             question: str = "How many days of leave?") -> str:
    """A request id whose screened request, draft and decisions are on the topics, and whose
    audit record the recorder has stored."""
    rid = f"fb-{uuid.uuid4().hex[:12]}"
    with stack.engine.begin() as conn:
        conn.execute(text("INSERT INTO documents (doc_id, version, privacy_class, license) "
                          "VALUES ('fb-doc', 3, 'internal', 'CC-BY-4.0'), "
                          "('fb-doc-2', 1, 'confidential', 'CC-BY-4.0') "
                          "ON CONFLICT (doc_id) DO NOTHING"))
    request = RagRequest(request_id=rid, reply_to="rag.replies.gateway",
                         question=question, principal=asker,
                         screening=Screening(policy_version="default@1#abc"))
    chunks = [RetrievedChunk(chunk_id="c" * 64, doc_id="fb-doc", text="Staff get 25 days."),
              RetrievedChunk(chunk_id="e" * 64, doc_id="fb-doc-2", privacy_class="confidential",
                             text="Seniority adds 5 days.")]
    draft = RagReply(request_id=rid, answer="25 days [1]", template_version="qa@v1",
                     model="smollm2", adapter="support", adapter_version="v2",
                     trace_id="ab" * 16, citations=[Citation(n=1, chunk_id="c" * 64,
                                                            doc_id="fb-doc")],
                     evidence=DraftEvidence(principal=asker, retrieved=chunks))
    decision = GuardrailEvent(event_id=f"{rid}:output:grounding", request_id=rid,
                              stage="output", check="grounding", action=grounding,
                              triggered=grounding != "allow",
                              score=0.91 if grounding == "allow" else 0.12,
                              policy_version="default@1#abc", principal_id=asker.id)
    _publish(stack, (t.RAG_SCREENED, rid, request.to_json()), (t.RAG_DRAFTS, rid, draft.to_json()),
             (t.GUARDRAILS_EVENTS, rid, decision.to_json()),
             (t.GUARDRAILS_EVENTS, rid, decision.to_json()))  # redelivered: stored once
    wait_for(lambda: stack.query("SELECT 1 FROM answer_audit WHERE request_id = :r AND "
                                 "question IS NOT NULL AND answer IS NOT NULL", r=rid),
             60, what="the audit record")
    wait_for(lambda: stack.query("SELECT 1 FROM guardrail_decisions WHERE request_id = :r",
                                 r=rid), 30, what="the guardrail decision")
    return rid


def feedback_rows(stack, rid: str) -> list:
    return stack.query("SELECT feedback_id, principal_id, role, rating, correction, channel "
                       "FROM answer_feedback WHERE request_id = :r ORDER BY recorded_at", r=rid)


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


def test_the_asker_rates_an_answer_over_http_once_even_when_the_post_is_retried(stack, client):
    rid = answered(stack, ALICE)
    body = {"request_id": rid, "rating": -1, "correction": "30 days since 2026",
            "comment": "outdated", "feedback_id": f"retry-{rid}"}
    first = client.post("/v1/feedback", json=body, headers=bearer(ALICE))
    again = client.post("/v1/feedback", json=body, headers=bearer(ALICE))
    assert first.status_code == again.status_code == 202, first.text
    assert first.json() == {"feedback_id": f"retry-{rid}", "request_id": rid,
                            "status": "accepted"}
    wait_for(lambda: feedback_rows(stack, rid), 30, what="the feedback row")
    stack.read_topic(t.RAG_FEEDBACK, lambda k, _v: k == rid.encode(), expected=2)
    rows = feedback_rows(stack, rid)
    assert [(r.principal_id, r.role, r.rating, r.correction, r.channel) for r in rows] == [
        ("alice-fb", "viewer", -1, "30 days since 2026", "gateway")]


def _dlq_for(stack, rid: str) -> dict:
    found = stack.read_topic(t.RAG_FEEDBACK_DLQ, lambda k, _v: k == rid.encode(), expected=1)
    assert found, f"no dead letter for {rid}"
    return json.loads(found[-1][1])


def test_only_the_asker_or_a_steward_may_rate_and_the_steward_is_recorded_as_such(stack,
                                                                                 client):
    """The gateway stays off the database, so it accepts any authenticated caller's feedback;
    the recorder decides, and dead-letters what it refuses, with the reason."""
    rid = answered(stack, ALICE)
    refused = client.post("/v1/feedback", json={"request_id": rid, "rating": -1},
                          headers=bearer(BOB))
    assert refused.status_code == 202, refused.text
    dead = _dlq_for(stack, rid)
    assert dead["error_type"] == "forbidden" and "steward" in dead["reason"]
    allowed = client.post("/v1/feedback", json={"request_id": rid, "rating": 1},
                          headers=bearer(STEWARD))
    assert allowed.status_code == 202, allowed.text
    wait_for(lambda: feedback_rows(stack, rid), 30, what="the steward's feedback")
    assert [(r.principal_id, r.role) for r in feedback_rows(stack, rid)] == [
        ("sam-fb", "steward")]


def test_feedback_on_an_answer_nobody_recorded_is_dead_lettered(stack, client):
    rid = f"fb-never-asked-{uuid.uuid4().hex[:8]}"
    assert client.post("/v1/feedback", json={"request_id": rid, "rating": 1},
                       headers=bearer(ALICE)).status_code == 202
    dead = _dlq_for(stack, rid)
    assert dead["error_type"] == "processing_error" and "unknown_request" in dead["reason"]


@pytest.mark.parametrize("body, headers, code", [
    ({"request_id": "x", "rating": 1}, None, 401),
    ({"request_id": "x", "rating": 5}, "alice", 422),
    ({"request_id": "x", "rating": 1, "principal": {"id": "alice-fb"}}, "alice", 422),
])
def test_bad_feedback_requests_get_clear_4xx(client, body, headers, code):
    response = client.post("/v1/feedback", json=body,
                           headers=bearer(ALICE) if headers else {})
    assert response.status_code == code, response.text


def test_over_kafka_the_feedbacks_author_is_whoever_the_credential_proves(stack, recorder):
    rid = answered(stack, ALICE)
    forged = FeedbackEvent(request_id=rid, rating=-1, credential=key_for(BOB))
    _publish(stack, (t.RAG_FEEDBACK, rid, forged.to_json()))
    dead = _dlq_for(stack, rid)
    assert dead["error_type"] == "forbidden" and dead["payload"] is None  # no credential kept
    genuine = FeedbackEvent(request_id=rid, rating=1, comment="thanks",
                            credential=key_for(ALICE))
    _publish(stack, (t.RAG_FEEDBACK, rid, genuine.to_json()))
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
    _publish(stack, (t.RAG_FEEDBACK, rid, json.dumps(payload).encode()))
    assert _dlq_for(stack, rid)["error_type"] == error_type
    assert feedback_rows(stack, rid) == []


# --- the closed loop: wrong answers become candidate examples in the review queue -----------

def candidates_for(stack, rid: str) -> list:
    return stack.query("SELECT example_id, messages, source, lineage, license, privacy_class, "
                       "review_status, tags FROM sft_examples WHERE lineage->>'request_id' = :r",
                       r=rid)


def test_a_correction_becomes_a_pending_example_with_its_evidence_and_no_pii(stack, client):
    rid = answered(stack, ALICE)
    correction = "30 days; ask Mary Jones (mary.jones@example.com) about seniority days."
    assert client.post("/v1/feedback", json={"request_id": rid, "rating": -1,
                                             "correction": correction},
                       headers=bearer(ALICE)).status_code == 202
    wait_for(lambda: candidates_for(stack, rid), 90, what="the candidate example")
    (example,) = candidates_for(stack, rid)
    assert (example.review_status, example.source, example.tags) == (
        "pending", "feedback", ["feedback", "correction"])
    assert example.messages[0] == {"role": "user", "content": "How many days of leave?"}
    target = example.messages[1]["content"]
    assert "mary.jones@example.com" not in target and "Mary Jones" not in target
    assert target.startswith("30 days")
    # the most restrictive class among the cited documents, and their licence
    assert (example.privacy_class, example.license) == ("confidential", "CC-BY-4.0")
    lineage = example.lineage
    assert (lineage["origin"], lineage["rated_by"], lineage["original_answer"]) == (
        "feedback", "alice-fb", "25 days [1]")
    assert [(c["doc_id"], c["doc_version"]) for c in lineage["cited"]] == [("fb-doc", 3),
                                                                            ("fb-doc-2", 1)]


def test_a_wrong_answer_without_correction_must_be_corrected_not_approved(stack, client):
    from services.common import supervision_review as sr

    rid = answered(stack, ALICE, question="Where is the parking?")
    assert client.post("/v1/feedback", json={"request_id": rid, "rating": -1},
                       headers=bearer(ALICE)).status_code == 202
    wait_for(lambda: candidates_for(stack, rid), 90, what="the candidate example")
    (example,) = candidates_for(stack, rid)
    assert example.tags == ["feedback", "needs-correction"]
    with pytest.raises(sr.SupervisionError, match="flagged as wrong"):
        sr.decide(stack.engine, example.example_id, "approved", "sita-sme")
    edited = sr.edit_answer(stack.engine, example.example_id, "Level -2.", "sita-sme")
    row = stack.query("SELECT review_status, tags FROM sft_examples WHERE example_id = :i",
                      i=edited.replaced_by)[0]
    assert (row.review_status, row.tags) == ("approved", ["feedback", "edited"])


def test_praise_adds_nothing_to_the_queue(stack, client):
    rid = answered(stack, ALICE, question="Canteen hours?")
    assert client.post("/v1/feedback", json={"request_id": rid, "rating": 1},
                       headers=bearer(ALICE)).status_code == 202
    wait_for(lambda: feedback_rows(stack, rid), 30, what="the feedback row")
    assert candidates_for(stack, rid) == []


def test_an_ungrounded_answer_becomes_a_candidate_on_its_own(stack, recorder):
    rid = answered(stack, ALICE, grounding="flag", question="Who approves travel?")
    wait_for(lambda: candidates_for(stack, rid), 90, what="the grounding candidate")
    (example,) = candidates_for(stack, rid)
    assert (example.source, example.tags) == ("grounding", ["grounding", "needs-correction"])
    assert example.lineage["grounding_score"] == pytest.approx(0.12)


def test_an_unreadable_record_is_logged_and_the_recorder_goes_on(stack, recorder):
    _publish(stack, (t.RAG_DRAFTS, "garbage", b"{not json"),
             (t.GUARDRAILS_EVENTS, "garbage", json.dumps({"event_id": "x"}).encode()))
    rid = answered(stack, ALICE, question="Still recording?")
    assert stack.query("SELECT question FROM answer_audit WHERE request_id = :r",
                       r=rid)[0].question == "Still recording?"
    log = (stack.state / "logs" / "audit.log").read_text()
    assert "unreadable rag.drafts record" in log
