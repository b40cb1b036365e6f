"""The recorder's batch handler on real Postgres, without Kafka: a batch is one transaction in
which each record is stored or refused on its own (a malformed record, or one the database
refuses under its savepoint, costs only itself), and an ungrounded answer in it becomes a
candidate example."""

from __future__ import annotations

import uuid

import pytest

from services.audit import handlers
from services.common import answer_audit, candidates
from services.common import topics as t
from tests.support.audit import ALICE, BOB, pipeline_records

pytestmark = pytest.mark.integration


def _values(records: list) -> list[tuple[str, bytes]]:
    return [(topic, value) for topic, _key, value in records]


def test_a_batch_stores_every_good_record_and_refuses_the_malformed_one(stack):
    asked = f"Who approves travel for team {uuid.uuid4().hex[:6]}?"  # a new candidate's text
    first, records_a = pipeline_records(stack, ALICE, grounding="flag", question=asked)
    second, records_b = pipeline_records(stack, BOB)
    batch = [*_values(records_a), (t.RAG_DRAFTS, b"{not json"), *_values(records_b)]
    refused = handlers.record_pipeline(stack.engine, batch)
    assert [r.index for r in refused] == [4]
    assert refused[0].error.error_type == "malformed_json"
    rows = stack.query("SELECT request_id, question, answer FROM answer_audit "
                       "WHERE request_id = ANY(:r) ORDER BY question", r=[first, second])
    assert [(r.request_id, r.question, r.answer) for r in rows] == [
        (second, "How many days of leave?", "25 days [1]"), (first, asked, "25 days [1]")]
    with stack.engine.connect() as conn:
        assert candidates.ungrounded(conn, [first, second]) == [first]
    made = stack.query("SELECT source FROM sft_examples WHERE lineage->>'request_id' = :r",
                       r=first)
    assert [m.source for m in made] == ["grounding"]


def test_a_record_the_database_refuses_costs_only_itself(stack, monkeypatch):
    rid, records = pipeline_records(stack, ALICE)
    real = answer_audit.record_decision

    def refuse_once(conn, event):
        real(conn, event)  # written, then undone with its savepoint
        raise ValueError("planted failure")

    monkeypatch.setattr(answer_audit, "record_decision", refuse_once)
    refused = handlers.record_pipeline(stack.engine, _values(records))
    assert [(r.index, r.error.error_type) for r in refused] == [
        (2, "processing_error"), (3, "processing_error")]
    assert "planted failure" in str(refused[0].error)
    assert stack.query("SELECT answer FROM answer_audit WHERE request_id = :r",
                       r=rid)[0].answer == "25 days [1]"
    assert stack.query("SELECT 1 FROM guardrail_decisions WHERE request_id = :r", r=rid) == []
