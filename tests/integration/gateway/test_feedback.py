"""Feedback on answers posted to the gateway (POST /v1/feedback), on the real broker and
Postgres, with the audit recorder running as its own Kafka identity (a subprocess, as
`customllm up` runs it): the gateway checks the credential and the body and answers 202, the
recorder decides and stores, and a wrong answer becomes a candidate example.

The answers themselves are put on the query-path topics by the test (as the broker's admin),
exactly as the guardrails and rag stages write them, so no model needs to load
(tests/support/audit.py). What the recorder does on its own, including feedback sent straight
to Kafka, is tests/integration/audit/test_app.py."""

from __future__ import annotations

import uuid

import pytest
from fastapi.testclient import TestClient

from services.common import topics as t
from services.common.config import get_settings
from services.gateway.app import create_app
from tests.support.audit import (
    ALICE,
    BOB,
    STEWARD,
    answered,
    audit_recorder,
    candidates_for,
    dlq_for,
    feedback_rows,
)
from tests.support.keys import bearer
from tests.support.stack import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def recorder(stack):
    with audit_recorder(stack) as running:
        yield running


@pytest.fixture(scope="module")
def client(stack, recorder):
    with TestClient(create_app(get_settings())) as test_client:
        yield test_client


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


def test_only_the_asker_or_a_steward_may_rate_and_the_steward_is_recorded_as_such(stack,
                                                                                 client):
    """The gateway stays off the database, so it accepts any authenticated caller's feedback;
    the recorder decides, and dead-letters what it refuses, with the reason."""
    rid = answered(stack, ALICE)
    refused = client.post("/v1/feedback", json={"request_id": rid, "rating": -1},
                          headers=bearer(BOB))
    assert refused.status_code == 202, refused.text
    dead = dlq_for(stack, rid)
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
    dead = dlq_for(stack, rid)
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


# --- the closed loop: wrong answers become candidate examples in the review queue -----------

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
