"""The pure parts of `customllm replay` and `doctor`: what a DLQ record turns into, and how the
replay progress is kept in a commit. No broker needed (marked unit)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from services.common import kafka_offsets as offsets
from services.common.events import DlqRecord
from services.ops.doctor import Check
from services.ops.replay import (
    REPLAY_HEADER,
    ReplayError,
    decide_dlq_record,
    parse_time,
    replay_headers,
)

pytestmark = pytest.mark.unit

DOC = {"doc_id": "docs/a.md", "version": 1, "op": "upsert", "content": "hello",
       "content_type": "text/markdown"}


def record(**fields: object) -> bytes:
    values = {"original_topic": "docs.changes", "partition": 1, "offset": 7, "key": "docs/a.md",
              "payload": json.dumps(DOC), "payload_encoding": "utf8",
              "payload_bytes": len(json.dumps(DOC)), "error_type": "schema_violation",
              "reason": "test", "service": "ingest"}
    values.update(fields)
    return DlqRecord(**values).to_json()


def test_a_text_payload_is_restored_with_its_key_and_partition():
    decision = decide_dlq_record(record(), target_partitions={"docs.changes": 3})
    assert decision.action == "replay" and decision.handled
    assert decision.topic == "docs.changes"
    assert decision.key == b"docs/a.md" and json.loads(decision.value) == DOC
    assert decision.partition == 1
    # Without knowing the target's partitions, the producer's partitioner decides.
    assert decide_dlq_record(record()).partition is None
    assert decide_dlq_record(record(partition=5),
                             target_partitions={"docs.changes": 3}).partition is None


def test_a_base64_payload_is_restored_byte_for_byte():
    raw = b"\xff\xfe\x00not text"
    decision = decide_dlq_record(record(payload=base64.b64encode(raw).decode(),
                                        payload_encoding="base64", error_type="undecodable"))
    assert decision.action == "replay" and decision.value == raw


def test_no_payload_replays_a_tombstone():
    decision = decide_dlq_record(record(payload=None, payload_encoding="none"))
    assert decision.action == "replay" and decision.value is None


@pytest.mark.parametrize(("fields", "reason"), [
    ({"original_topic": "rag.screened"}, "not a replayable source topic"),
    ({"original_topic": "docs.status"}, "not a replayable source topic"),
    ({"payload_truncated": True}, "truncated"),
    ({"payload": "***", "payload_encoding": "base64"}, "base64"),
])
def test_records_that_can_never_be_replayed_are_refused_for_good(fields, reason):
    decision = decide_dlq_record(record(**fields))
    assert decision.action == "skip" and reason in decision.reason
    assert decision.handled, "refused for good: no later replay needs to look again"


@pytest.mark.parametrize("value", [b"not json", b"[]", b'{"original_topic": "docs.changes"}',
                                   None])
def test_an_invalid_dlq_record_is_refused(value):
    decision = decide_dlq_record(value)
    assert decision.action == "skip" and "dlq-record.v1" in decision.reason and decision.handled


def test_the_error_type_filter_leaves_other_records_for_later():
    decision = decide_dlq_record(record(error_type="too_large"), error_types=["schema_violation"])
    assert decision.action == "skip" and not decision.handled
    assert decide_dlq_record(record(), error_types=["schema_violation"]).action == "replay"


def test_key_mismatch_needs_rekey_and_rekey_takes_the_doc_id():
    bad = record(key="wrong-key", error_type="key_mismatch", partition=2)
    skipped = decide_dlq_record(bad)
    assert skipped.action == "skip" and "--rekey-from-doc-id" in skipped.reason
    assert not skipped.handled
    fixed = decide_dlq_record(bad, rekey=True, target_partitions={"docs.changes": 3})
    assert fixed.action == "replay" and fixed.key == b"docs/a.md"
    assert fixed.partition is None, "a new key is placed by the partitioner, not the old slot"
    assert "rekeyed" in fixed.reason
    request = {"request_id": "r-1", "reply_to": "rag.replies", "question": "q",
               "principal": {"id": "p"}}
    rekeyed = decide_dlq_record(record(original_topic="rag.requests", key="x",
                                       payload=json.dumps(request), error_type="key_mismatch"),
                                rekey=True)
    assert rekeyed.key == b"r-1"
    no_id = decide_dlq_record(record(key="x", payload="plain text", error_type="key_mismatch"),
                              rekey=True)
    assert no_id.action == "skip" and no_id.handled


def test_replay_headers_mark_the_source_record_once():
    headers = replay_headers("docs.changes.dlq", 2, 41,
                             [("traceparent", b"00-abc"), (REPLAY_HEADER, b"old"), ("n", None)])
    assert headers == [("traceparent", b"00-abc"), ("n", b""),
                       (REPLAY_HEADER, b"docs.changes.dlq:2:41")]


def test_parse_time_accepts_iso_8601_and_defaults_to_utc():
    assert parse_time("2025-01-31") == datetime(2025, 1, 31, tzinfo=UTC)
    assert parse_time("2025-01-31T12:30:00Z") == datetime(2025, 1, 31, 12, 30, tzinfo=UTC)
    assert parse_time("2025-01-31T12:30+02:00") == datetime(
        2025, 1, 31, 12, 30, tzinfo=timezone(timedelta(hours=2)))
    with pytest.raises(ReplayError, match="ISO 8601"):
        parse_time("yesterday")


def test_replay_marks_round_trip_and_compact():
    mark = offsets.decode_mark(None, None)
    assert mark == offsets.ReplayMark(0, frozenset())
    mark, lost = offsets.advance_mark(mark, {0, 1, 2, 5, 6, 9})
    assert (mark.next_offset, sorted(mark.done), lost) == (3, [5, 6, 9], 0)
    offset, metadata = offsets.encode_mark(mark)
    assert (offset, metadata) == (3, "customllm-replay/1 5-6,9")
    assert offsets.decode_mark(offset, metadata) == mark
    assert [mark.handled(o) for o in range(11)] == [
        True, True, True, False, False, True, True, False, False, True, False]
    # 10 records stored from offset 0: 3, 4, 7 and 8 are still to be replayed.
    assert mark.pending(0, 10) == 4
    assert mark.pending(8, 10) == 1
    mark, _ = offsets.advance_mark(mark, {3, 4})
    assert (mark.next_offset, sorted(mark.done)) == (7, [9])
    # Metadata that is not ours, or garbage, counts as no extra progress.
    assert offsets.decode_mark(12, "something else") == offsets.ReplayMark(12, frozenset())
    assert offsets.decode_mark(12, "customllm-replay/1 x,3-,14") == offsets.ReplayMark(
        12, frozenset({14}))


def test_a_mark_that_outgrows_the_commit_metadata_passes_over_the_oldest_gaps():
    handled = set(range(0, 4000, 2))  # every other record: 2000 separate ranges
    mark, lost = offsets.advance_mark(offsets.ReplayMark(), handled, max_chars=200)
    assert len(offsets.encode_mark(mark)[1]) <= 200
    assert lost > 0 and mark.next_offset > 0
    assert all(mark.handled(o) for o in handled)


def test_bootstrap_hosts_parse_every_form():
    assert offsets.bootstrap_hosts("a:1, b:2,,[::1]:3,c,kafka://d:4") == [
        ("a", 1), ("b", 2), ("::1", 3), ("c", 9092), ("d", 4)]


def test_check_status_and_ok_agree():
    assert Check.fail("x", "d").ok is False and Check.fail("x", "d").status == "fail"
    assert Check.warn("x", "d").ok and Check.skip("x", "Kafka").status == "skip"
    assert Check("x", False, "d").status == "fail"
    assert Check("x", True, "d", status="fail").ok is False
