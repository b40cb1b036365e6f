"""Where a request's time goes between processes: the Kafka timestamps of its messages.

Each hop's record carries the producer's creation time: the gateway's ``rag.requests``, the
input stage's ``rag.screened``, the rag worker's ``rag.drafts``, the output stage's reply on the
gateway's reply topic. With the client's own send and receive times (same host clock), a
request splits into: gateway in, input stage (+ its audit events and one hop), rag worker
(+ one hop), output stage (+ its audit events and one hop), gateway out (+ the reply hop).
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from services.common import kafka_auth
from services.common.kafka_acl import reply_topic_for
from services.common.topics import RAG_DRAFTS, RAG_REQUESTS, RAG_SCREENED

SEGMENTS = ("gateway_in", "input_stage", "rag_worker", "output_stage", "gateway_out")


def record_times(bootstrap: str, topic: str, ids: set[str]) -> dict[str, float]:
    """request id (the record key) → the first record's timestamp, seconds."""
    consumer = Consumer({**kafka_auth.client_config(bootstrap),
                         "group.id": f"bench-timeline-{time.time_ns()}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    found: dict[str, float] = {}
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        if topic not in metadata.topics or metadata.topics[topic].error is not None:
            return found
        parts = []
        ends = {}
        for p in metadata.topics[topic].partitions:
            _low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            ends[p] = high
            parts.append(TopicPartition(topic, p, 0))
        consumer.assign(parts)
        left = {p for p, high in ends.items() if high > 0}
        deadline = time.monotonic() + 60
        while left and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None or message.error():
                continue
            if message.offset() + 1 >= ends[message.partition()]:
                left.discard(message.partition())
            key = (message.key() or b"").decode("utf-8", "replace")
            if key in ids and key not in found:
                found[key] = message.timestamp()[1] / 1000
    finally:
        consumer.close()
    return found


def timeline(bootstrap: str, requests: list[dict[str, Any]]) -> dict[str, Any]:
    """Median ms per segment over ``requests`` (each with ``id``, ``sent`` and ``received``
    wall-clock seconds)."""
    ids = {r["id"] for r in requests if r.get("id")}
    stamps = {name: record_times(bootstrap, topic, ids) for name, topic in (
        ("requests", RAG_REQUESTS), ("screened", RAG_SCREENED), ("drafts", RAG_DRAFTS),
        ("replies", reply_topic_for("gateway")))}
    segments: dict[str, list[float]] = {name: [] for name in SEGMENTS}
    for r in requests:
        got = [stamps[n].get(r.get("id", "")) for n in ("requests", "screened", "drafts",
                                                         "replies")]
        if any(t is None for t in got):
            continue
        points = [r["sent"], *got, r["received"]]
        for name, (a, b) in zip(SEGMENTS, zip(points, points[1:], strict=False), strict=True):
            segments[name].append((b - a) * 1000)
    return {"requests": len(segments["gateway_in"]),
            **{name: round(statistics.median(v), 1) if v else None
               for name, v in segments.items()}}
