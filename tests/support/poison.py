"""Shared by the per-service poison-message tests (``tests/integration/<service>/test_app.py``):
the check that a dead-letter record keeps the original message, reading what a topic holds for
one key up to the topic's current end (an absence check that waits for nothing), and which
process a worker runs as."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from services.common import kafka_auth
from services.common.messages import DLQ_PAYLOAD_LIMIT
from services.stack import services as worker_procs
from tests.support.stack import LocalStack


def assert_dead_lettered(record: dict[str, Any], *, service: str, source: str, value: bytes,
                         error_type: str) -> None:
    """``record`` is the dead-letter record of ``value`` (consumed from ``source``): the
    machine-readable error type, a reason, where it came from, and the original payload (its
    first ``DLQ_PAYLOAD_LIMIT`` bytes when it is larger), so it can be replayed."""
    assert record["error_type"] == error_type, record["reason"]
    assert record["reason"].strip()
    assert (record["service"], record["original_topic"]) == (service, source)
    assert isinstance(record["partition"], int) and isinstance(record["offset"], int)
    assert record["payload_encoding"] == "utf8" and record["payload_bytes"] == len(value)
    assert record["payload_truncated"] == (len(value) > DLQ_PAYLOAD_LIMIT)
    assert record["payload"] == value[:DLQ_PAYLOAD_LIMIT].decode()


def records_so_far(stack: LocalStack, topic: str, key: str,
                   timeout_s: float = 60) -> list[dict[str, Any]]:
    """The JSON values keyed ``key`` on ``topic`` from its beginning to its end as of now. Call
    it once the worker's last send for the message in question has been seen (a processor
    delivers a message's sends in order, each acknowledged): what is not there by then was
    never sent."""
    consumer = Consumer({**kafka_auth.client_config(stack.settings.kafka_bootstrap),
                         "group.id": f"tests-{uuid.uuid4().hex}", "enable.auto.commit": False})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in partitions}
        todo = [TopicPartition(topic, p, 0) for p, end in ends.items() if end > 0]
        consumer.assign(todo)
        found: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout_s
        while todo and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and not message.error() and message.key() == key.encode():
                found.append(json.loads(message.value()))
            todo = [tp for tp in consumer.position(todo) if tp.offset < ends[tp.partition]]
        assert not todo, f"could not read {topic} to its end in {timeout_s}s"
        return found
    finally:
        consumer.close()


def worker_pid(stack: LocalStack, name: str) -> int | None:
    """The pid of the running worker ``name`` (None when it is not running)."""
    return worker_procs.processes.read_pid(worker_procs.run_dir(stack.state), name)
