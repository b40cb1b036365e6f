"""`customllm replay` on the real broker (no workers needed): DLQ records are restored and
re-driven exactly once, dry runs change nothing, and a topic's time range is re-produced.

The DLQ and source topics are shared with the rest of the session, so every test selects its
own records by time (``since``) and by unique keys.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from confluent_kafka import Consumer, TopicPartition

from services.common import kafka_auth
from services.common import kafka_offsets as offsets
from services.common.events import DlqRecord
from services.common.producer import flush, make_producer
from services.common.topics import DOCS_CHANGES, DOCS_CHANGES_DLQ
from services.ops.replay import (
    REPLAY_HEADER,
    ReplayError,
    replay_dlq,
    replay_group,
    replay_topic,
)

pytestmark = pytest.mark.integration


def _doc(doc_id: str) -> dict:
    return {"doc_id": doc_id, "version": 1, "op": "upsert",
            "content": f"Replay test document {doc_id}.", "content_type": "text/plain"}


def _dlq(original_topic: str = DOCS_CHANGES, **fields: object) -> DlqRecord:
    values = {"original_topic": original_topic, "partition": 0, "offset": 0,
              "payload_encoding": "utf8", "error_type": "schema_violation",
              "reason": "test", "service": "tests"}
    values.update(fields)
    return DlqRecord(**values)


def _produce(stack, topic: str, messages: list[tuple[bytes | None, bytes | None]],
             headers: list[tuple[str, bytes]] | None = None) -> None:
    producer, errors = make_producer(stack.settings.kafka_bootstrap, "tests-replay"), []
    for key, value in messages:
        producer.produce(topic, key=key, value=value, headers=headers or [],
                         on_delivery=lambda err, _m: err and errors.append(str(err)))
    flush(producer, errors)


def _high(stack, topic: str) -> dict[int, int]:
    consumer = offsets.open_consumer(stack.settings.kafka_bootstrap, "tests-replay-read", 5)
    try:
        partitions = offsets.partitions_of(consumer, topic, 5)
        return {p: high for p, (_low, high) in
                offsets.watermarks(consumer, topic, partitions, 5).items()}
    finally:
        consumer.close()


def _committed(stack, topic: str) -> dict[int, tuple[int | None, str | None]]:
    consumer = offsets.open_consumer(stack.settings.kafka_bootstrap, replay_group(topic), 5)
    try:
        return offsets.committed(consumer, topic, offsets.partitions_of(consumer, topic, 5), 5)
    finally:
        consumer.close()


def _read_from(stack, topic: str, start: dict[int, int], expected: int,
               timeout_s: float = 30) -> list:
    """Messages written to ``topic`` at or after ``start`` (per partition)."""
    consumer = Consumer({**kafka_auth.client_config(stack.settings.kafka_bootstrap),
                         "group.id": f"tests-{uuid.uuid4().hex}", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, p, o) for p, o in start.items()])
    found = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(found) < expected and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                found.append(message)
    finally:
        consumer.close()
    return found


def _replayed(messages: list) -> list:
    return [m for m in messages if REPLAY_HEADER in dict(m.headers() or [])]


def test_dlq_replay_restores_messages_once_and_dry_run_changes_nothing(stack):
    settings = stack.settings
    tag = uuid.uuid4().hex[:8]
    a, b, c = (f"replay-{tag}/{name}" for name in ("a", "b", "c"))
    raw_a = json.dumps(_doc(a)).encode()
    since = datetime.now(UTC)
    _produce(stack, DOCS_CHANGES_DLQ, [
        # base64 payload, original partition 1
        (a.encode(), _dlq(key=a, partition=1, payload=base64.b64encode(raw_a).decode(),
                          payload_encoding="base64", error_type="undecodable").to_json()),
        (b.encode(), _dlq(key=b, payload=json.dumps(_doc(b))).to_json()),
        # never replayable: an internal topic, a truncated payload
        (b"x", _dlq("rag.screened", key="x", payload="{}").to_json()),
        (b"y", _dlq(key="y", payload="{", payload_truncated=True).to_json()),
        # needs --rekey-from-doc-id
        (b"wrong-key", _dlq(key="wrong-key", payload=json.dumps(_doc(c)),
                            error_type="key_mismatch").to_json()),
    ])
    source_before, marks_before = _high(stack, DOCS_CHANGES), _committed(stack, DOCS_CHANGES_DLQ)

    dry = replay_dlq(settings, DOCS_CHANGES_DLQ, since=since, dry_run=True)
    assert dry.replayed == 2 and {i.key for i in dry.items if i.action == "replay"} == {a, b}
    reasons = " | ".join(dry.skipped)
    assert "not a replayable source topic" in reasons and "truncated" in reasons
    assert "--rekey-from-doc-id" in reasons
    assert _high(stack, DOCS_CHANGES) == source_before, "a dry run produced messages"
    assert _committed(stack, DOCS_CHANGES_DLQ) == marks_before, "a dry run recorded progress"

    # Only one error type first: the others stay replayable.
    first = replay_dlq(settings, DOCS_CHANGES_DLQ, since=since,
                       error_types=["schema_violation"])
    assert first.replayed == 1 and first.targets == {DOCS_CHANGES: 1}
    second = replay_dlq(settings, DOCS_CHANGES_DLQ, since=since)
    assert second.replayed == 1, "the schema_violation record must not be replayed twice"
    assert [i.key for i in second.items if i.action == "replay"] == [a]
    rekeyed = replay_dlq(settings, DOCS_CHANGES_DLQ, since=since, rekey=True)
    assert rekeyed.replayed == 1
    (item,) = [i for i in rekeyed.items if i.action == "replay"]
    assert item.key == c and item.error_type == "key_mismatch"
    again = replay_dlq(settings, DOCS_CHANGES_DLQ, since=since, rekey=True)
    assert again.replayed == 0

    out = {m.key().decode(): m for m in _replayed(_read_from(stack, DOCS_CHANGES, source_before,
                                                             expected=3))}
    assert set(out) >= {a, b, c}
    assert out[a].value() == raw_a and out[a].partition() == 1
    assert json.loads(out[b].value()) == _doc(b)
    assert json.loads(out[c].value())["doc_id"] == c
    source, partition, offset = dict(out[a].headers())[REPLAY_HEADER].decode().rsplit(":", 2)
    assert source == DOCS_CHANGES_DLQ and int(partition) >= 0 and int(offset) >= 0
    # Every record of this test is now handled in the replay group.
    marks = _committed(stack, DOCS_CHANGES_DLQ)
    assert any(metadata and metadata.startswith(offsets.MARK_PREFIX)
               for _, metadata in marks.values())


def test_dlq_replay_honours_limit_and_until(stack):
    settings = stack.settings
    tag = uuid.uuid4().hex[:8]
    since = datetime.now(UTC)
    ids = [f"limit-{tag}/{i}" for i in range(3)]
    _produce(stack, DOCS_CHANGES_DLQ, [(d.encode(), _dlq(key=d, payload=json.dumps(_doc(d)))
                                        .to_json()) for d in ids])
    time.sleep(0.05)
    until = datetime.now(UTC)
    time.sleep(0.05)
    late = f"limit-{tag}/late"
    _produce(stack, DOCS_CHANGES_DLQ, [(late.encode(), _dlq(key=late, payload=json.dumps(
        _doc(late))).to_json())])

    limited = replay_dlq(settings, DOCS_CHANGES_DLQ, since=since, until=until, limit=2)
    assert limited.replayed == 2 and limited.stopped == "--limit 2 reached"
    rest = replay_dlq(settings, DOCS_CHANGES_DLQ, since=since, until=until)
    assert rest.replayed == 1
    replayed_keys = {i.key for i in limited.items + rest.items if i.action == "replay"}
    assert replayed_keys == set(ids)
    last = replay_dlq(settings, DOCS_CHANGES_DLQ, since=since)
    assert [i.key for i in last.items if i.action == "replay"] == [late]


def test_replay_refuses_what_it_must_not_touch(stack):
    settings = stack.settings
    now = datetime.now(UTC)
    with pytest.raises(ReplayError, match="not a DLQ topic"):
        replay_dlq(settings, DOCS_CHANGES)
    with pytest.raises(ReplayError, match="unknown error type"):
        replay_dlq(settings, DOCS_CHANGES_DLQ, error_types=["typo"])
    with pytest.raises(ReplayError, match="cannot be replayed"):
        replay_topic(settings, "docs.status", since=now)
    with pytest.raises(ReplayError, match="later than"):
        replay_topic(settings, DOCS_CHANGES, since=now, until=now - timedelta(seconds=1))


def test_replay_reports_an_unreachable_broker(stack):
    from services.common.config import Settings

    with pytest.raises(ReplayError, match="not reachable"):
        replay_dlq(Settings(kafka_bootstrap="127.0.0.1:1"), DOCS_CHANGES_DLQ, timeout_s=2)


def test_topic_range_replay_reproduces_the_range_to_the_same_partitions(stack):
    settings = stack.settings
    tag = uuid.uuid4().hex[:8]
    ids = [f"range-{tag}/{i}" for i in range(3)]
    since = datetime.now(UTC)
    _produce(stack, DOCS_CHANGES, [(d.encode(), json.dumps(_doc(d)).encode()) for d in ids],
             headers=[("x-test", tag.encode())])
    time.sleep(0.05)
    until = datetime.now(UTC)
    time.sleep(0.05)
    _produce(stack, DOCS_CHANGES, [(f"range-{tag}/late".encode(),
                                    json.dumps(_doc(f"range-{tag}/late")).encode())])
    originals = {m.key().decode(): m for m in _read_from(stack, DOCS_CHANGES, {
        p: max(0, h - 50) for p, h in _high(stack, DOCS_CHANGES).items()}, expected=10**6,
        timeout_s=3) if m.key() and m.key().decode() in ids}
    assert set(originals) == set(ids)
    before = _high(stack, DOCS_CHANGES)

    dry = replay_topic(settings, DOCS_CHANGES, since=since, until=until, dry_run=True)
    assert dry.replayed == 3 and {i.key for i in dry.items} == set(ids)
    assert _high(stack, DOCS_CHANGES) == before

    done = replay_topic(settings, DOCS_CHANGES, since=since, until=until)
    assert done.replayed == 3 and done.group is None
    copies = {m.key().decode(): m for m in _replayed(_read_from(stack, DOCS_CHANGES, before,
                                                                expected=3))}
    assert set(copies) == set(ids)
    for doc_id, copy in copies.items():
        original = originals[doc_id]
        assert copy.value() == original.value()
        assert copy.partition() == original.partition()
        headers = dict(copy.headers())
        assert headers["x-test"] == tag.encode(), "original headers are kept"
        assert headers[REPLAY_HEADER] == (
            f"{DOCS_CHANGES}:{original.partition()}:{original.offset()}".encode())
