"""Reading a fine-tuning job's lifecycle from ``finetune.events``, as the tests observe it."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer, TopicPartition

from services.common import kafka_auth
from services.common.events import FinetuneEvent
from services.common.topics import FINETUNE_EVENTS

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
