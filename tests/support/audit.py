"""Answers on the query-path topics and the audit recorder that stores them, for the recorder's
tests (tests/integration/audit) and the gateway's feedback tests (tests/integration/gateway).

The answers are put on the topics by the test (as the broker's admin), exactly as the
guardrails and rag stages write them, so no model needs to load."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import text

from services.common import topics as t
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
from services.common.producer import flush, make_producer, send
from tests.support.stack import Workers, paused, wait_for

ALICE = Principal(id="alice-fb", groups=["employees"], clearance="internal")
BOB = Principal(id="bob-fb", groups=["employees"], clearance="internal")
STEWARD = Principal(id="sam-fb", groups=["stewards"], clearance="confidential")


@contextmanager
def audit_recorder(stack) -> Iterator[Workers]:
    """The recorder as its own Kafka identity (a subprocess, as `customllm up` runs it). The
    tests put answers on the query-path topics themselves, so any rag and guardrails workers
    the session runs are paused meanwhile: they would dead-letter those messages and answer
    with drafts, replies and decisions of their own for the same request ids."""
    with paused(stack, ("rag", "guardrails")):
        skip_backlog(stack)
        running = Workers(stack, {}, names=("audit",))
        running.start_all()
        try:
            yield running
        finally:
            running.stop_all()


def skip_backlog(stack) -> None:
    """Move the recorder's group to the end of its topics: these tests publish their own
    records, and reading what the end-to-end tests left there took a minute of every suite run
    (the recorder's catch-up rate is ``benchmarks/audit_throughput.py``'s to measure)."""
    from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition
    from confluent_kafka.admin import AdminClient, OffsetSpec

    from services.audit.app import GROUP, TOPICS
    from services.common import kafka_auth

    admin = AdminClient(kafka_auth.client_config(stack.settings.kafka_bootstrap))
    partitions = [TopicPartition(topic, partition) for topic in TOPICS
                  for partition in admin.list_topics(topic, timeout=10).topics[topic].partitions]

    def ends() -> list | None:
        try:  # a topic created a moment ago may not have its leader yet
            found = admin.list_offsets({p: OffsetSpec.latest() for p in partitions})
            return [TopicPartition(p.topic, p.partition, f.result(timeout=10).offset)
                    for p, f in found.items()]
        except KafkaException:
            return None

    offsets = wait_for(ends, 60, interval_s=1, what="the audit topics' end offsets")
    for future in admin.alter_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(GROUP, offsets)]).values():
        future.result(timeout=30)


def publish(stack, *records: tuple[str, str, bytes]) -> None:
    producer, errors = make_producer(stack.settings.kafka_bootstrap, "tests-feedback"), []
    for topic, key, value in records:
        send(producer, topic, key, value, errors=errors)
    flush(producer, errors)


def pipeline_records(stack, asker: Principal, grounding: str = "allow",
                     question: str = "How many days of leave?") -> tuple[str, list]:
    """A new request id and its records as the stages write them: ``(topic, key, value)`` of
    the screened request, the draft and its grounding decision (twice: a redelivery)."""
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
    return rid, [(t.RAG_SCREENED, rid, request.to_json()), (t.RAG_DRAFTS, rid, draft.to_json()),
                 (t.GUARDRAILS_EVENTS, rid, decision.to_json()),
                 (t.GUARDRAILS_EVENTS, rid, decision.to_json())]


def answered(stack, asker: Principal, grounding: str = "allow",
             question: str = "How many days of leave?") -> str:
    """A request id whose screened request, draft and decisions are on the topics, and whose
    audit record the recorder has stored."""
    rid, records = pipeline_records(stack, asker, grounding, question)
    publish(stack, *records)
    wait_for(lambda: stack.query("SELECT 1 FROM answer_audit WHERE request_id = :r AND "
                                 "question IS NOT NULL AND answer IS NOT NULL", r=rid),
             300, what="the audit record")
    # 300 s: the first request of a module waits for a freshly started recorder to load its PII
    # models (its backlog is skipped, see ``skip_backlog``).
    wait_for(lambda: stack.query("SELECT 1 FROM guardrail_decisions WHERE request_id = :r",
                                 r=rid), 30, what="the guardrail decision")
    return rid


def feedback_rows(stack, rid: str) -> list:
    return stack.query("SELECT feedback_id, principal_id, role, rating, correction, channel "
                       "FROM answer_feedback WHERE request_id = :r ORDER BY recorded_at", r=rid)


def dlq_for(stack, rid: str) -> dict:
    found = stack.read_topic(t.RAG_FEEDBACK_DLQ, lambda k, _v: k == rid.encode(), expected=1)
    assert found, f"no dead letter for {rid}"
    return json.loads(found[-1][1])


def candidates_for(stack, rid: str) -> list:
    return stack.query("SELECT example_id, messages, source, lineage, license, privacy_class, "
                       "review_status, tags FROM sft_examples WHERE lineage->>'request_id' = :r",
                       r=rid)
