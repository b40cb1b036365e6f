"""Reading a fine-tuning job's lifecycle from ``finetune.events``, as the tests observe it."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer, TopicPartition

from services.common import kafka_auth
from services.common.events import (
    FinetuneEvaluation,
    FinetuneEvent,
    FinetuneRequest,
    Principal,
    RagFilters,
    RagOptions,
    RagRequest,
)
from services.common.producer import flush, make_producer, send
from services.common.rpc import new_request_id
from services.common.topics import FINETUNE_EVENTS, FINETUNE_REQUESTS
from tests.support.keys import key_for

TERMINAL = frozenset({"completed", "failed", "cancelled"})


def job_events(bootstrap: str, job_id: str, until: set[str] | frozenset[str],
               timeout_s: float) -> list[FinetuneEvent]:
    """The job's events from the start of the topic until one whose status is in ``until``;
    an AssertionError listing what was seen when none comes in time."""
    consumer = Consumer({**kafka_auth.client_config(bootstrap),
                         "group.id": f"tests-{uuid.uuid4().hex}", "enable.auto.commit": False})
    partitions = consumer.list_topics(FINETUNE_EVENTS, timeout=10).topics[FINETUNE_EVENTS]
    consumer.assign([TopicPartition(FINETUNE_EVENTS, p, 0) for p in partitions.partitions])
    found: list[FinetuneEvent] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None or message.error() or message.key() != job_id.encode():
                continue
            found.append(FinetuneEvent.model_validate_json(message.value()))
            if found[-1].status in until:
                return found
    finally:
        consumer.close()
    raise AssertionError(f"no {sorted(until)} event for {job_id} in {timeout_s}s; saw "
                         f"{[(e.status, e.message, e.error) for e in found]}")


# The gate is the real one, but a two-step adapter cannot be held to real tolerances: these let
# promotion be decided by the gate's error checks alone.
LOOSE_TOLERANCES = {"f1": 1.0, "exact_match": 1.0, "hit@5": 1.0, "faithfulness": 1.0,
                    "abstention_correct": 1.0, "false_abstention": 1.0, "latency_total_ms": None}
FOUR_PAIRS = [("Who designed the Zorblax reactor?", "Miriam Okafor designed it [1]."),
              ("When is the reactor inspected?", "In March and in September [1]."),
              ("What grows in the Lisbon rooftop garden?", "Tomatoes, basil and lemon trees [1]."),
              ("When are Quillon salaries paid?", "On the twenty-fifth of each month [1].")]


def four_example_snapshot(engine, source: str, question_suffix: str = "") -> str:
    """A supervision snapshot of four approved examples about ``tests.support.corpus``'s facts.

    Examples are unique by content across the session, so a test that needs its own set passes
    a ``question_suffix``."""
    from services.finetune import supervision
    from services.finetune.examples import ChatExample

    for question, answer in FOUR_PAIRS:
        supervision.add_example(engine, ChatExample(messages=[
            {"role": "user", "content": question + question_suffix},
            {"role": "assistant", "content": answer}]),
            source=source, approved_by="tests", privacy_class="public")
    return supervision.create_snapshot(engine, sources=[source]).snapshot_id


def two_question_gate(prefix: str) -> FinetuneEvaluation:
    """The gate's evaluation: two questions about the corpus under ``prefix``, short answers."""
    return FinetuneEvaluation(
        cases=[{"id": "reactor", "question": "Who designed the Zorblax reactor?",
                "answers": ["Miriam Okafor"], "gold_doc_ids": [f"{prefix}reactor"]},
               {"id": "garden", "question": "What grows in the Lisbon rooftop garden?",
                "answers": ["tomatoes, basil and lemon trees"],
                "gold_doc_ids": [f"{prefix}garden"]}],
        tolerances=LOOSE_TOLERANCES, doc_id_prefix=prefix, max_tokens=8, n_boot=200)


def submit(bootstrap: str, request: FinetuneRequest) -> None:
    producer, errors = make_producer(bootstrap, "tests-e2e"), []
    send(producer, FINETUNE_REQUESTS, request.job_id, request.to_json(), errors=errors)
    flush(producer, errors)


def ask_reactor(reply_client, prefix: str, adapter: str, max_tokens: int = 8):
    """The reactor question, asked over Kafka with ``adapter`` and no cache, as a reader with
    every clearance (so only the adapter decides the outcome)."""
    return reply_client.request(RagRequest(
        request_id=new_request_id(), reply_to="rag.replies.any",
        question="Who designed the Zorblax reactor?",
        credential=key_for(Principal(id="tests", clearance="restricted")),
        options=RagOptions(adapter=adapter, use_cache=False, max_tokens=max_tokens,
                           filters=RagFilters(doc_id_prefix=prefix))), 180)
