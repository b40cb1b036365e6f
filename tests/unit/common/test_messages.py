"""Every consumer decodes through ``decode_json`` and dead-letters through ``dlq_record``; the
DLQ record must keep enough of the original message to fix it and replay it byte for byte."""

import base64
import json

import pytest

from services.common import contracts
from services.common.exceptions import InvalidEvent
from services.common.messages import DLQ_PAYLOAD_LIMIT, decode_json, dlq_record

pytestmark = pytest.mark.unit

SCHEMA = "doc-change.v1"
GOOD = {"doc_id": "a.md", "version": 3, "op": "upsert", "content": "héllo"}


def _error(value: bytes, max_bytes: int = 1000) -> InvalidEvent:
    with pytest.raises(InvalidEvent) as caught:
        decode_json(value, max_bytes, SCHEMA)
    return caught.value


def test_valid_message_decodes_to_its_payload():
    assert decode_json(json.dumps(GOOD).encode(), 1000, SCHEMA) == GOOD


@pytest.mark.parametrize("value, max_bytes, error_type, fragment", [
    (b"x" * 11, 10, "too_large", "message is 11 bytes, limit is 10"),
    (b"\xff\xfe\x00garbage", 1000, "undecodable", "not valid UTF-8"),
    (b'{"doc_id": "broken", ', 1000, "malformed_json", "value is not JSON"),
    (b"[1, 2]", 1000, "schema_violation", "doc-change.v1: expected a JSON object"),
    (b'"just a string"', 1000, "schema_violation", "expected a JSON object"),
    (b'{"doc_id": "a", "op": "upsert", "content": "x"}', 1000, "schema_violation",
     "'version' is a required property"),
])
def test_each_failure_has_its_error_type(value, max_bytes, error_type, fragment):
    error = _error(value, max_bytes)
    assert error.error_type == error_type
    assert fragment in error.reason


def test_size_is_checked_before_encoding():
    # Cheapest check first: an oversized message is never decoded at all.
    assert _error(b"\xff" * 20, 10).error_type == "too_large"


def test_a_message_exactly_at_the_limit_is_accepted():
    value = json.dumps(GOOD).encode()
    assert decode_json(value, len(value), SCHEMA)["version"] == 3


def _record(value: bytes | None, key: bytes | None = b"a.md", error_type: str = "processing_error"):
    return dlq_record(topic="docs.changes", partition=1, offset=17, key=key, value=value,
                      error=InvalidEvent(error_type, "why it failed"), service="ingest")


def _validates(record) -> dict:
    document = json.loads(record.to_json())
    contracts.validate("dlq-record.v1", document)
    return document


def test_utf8_payload_is_kept_as_text():
    value = '{"doc_id": "ü"'.encode()
    document = _validates(_record(value, error_type="malformed_json"))
    assert document["payload"] == '{"doc_id": "ü"'
    assert document["payload_encoding"] == "utf8"
    assert document["payload_bytes"] == len(value) == 15
    assert document["payload_truncated"] is False
    assert (document["original_topic"], document["partition"], document["offset"]) == (
        "docs.changes", 1, 17)
    assert (document["key"], document["error_type"], document["reason"], document["service"]) == (
        "a.md", "malformed_json", "why it failed", "ingest")


def test_non_utf8_payload_is_base64_and_decodes_back_to_the_same_bytes():
    value = b"\xff\xfe\x00garbage\x80"
    document = _validates(_record(value, error_type="undecodable"))
    assert document["payload_encoding"] == "base64"
    assert base64.b64decode(document["payload"]) == value
    assert document["payload_bytes"] == 11


def test_payload_beyond_the_limit_is_truncated_and_flagged():
    value = b"a" * (DLQ_PAYLOAD_LIMIT + 25)
    document = _validates(_record(value, error_type="too_large"))
    assert document["payload_truncated"] is True
    assert document["payload"] == "a" * DLQ_PAYLOAD_LIMIT
    assert document["payload_bytes"] == DLQ_PAYLOAD_LIMIT + 25


def test_payload_exactly_at_the_limit_is_not_truncated():
    document = _validates(_record(b"b" * DLQ_PAYLOAD_LIMIT))
    assert document["payload_truncated"] is False
    assert len(document["payload"]) == DLQ_PAYLOAD_LIMIT


def test_missing_key_and_tombstone_value():
    document = _validates(_record(None, key=None, error_type="schema_violation"))
    assert document["key"] is None
    assert document["payload"] is None
    assert document["payload_encoding"] == "none"
    assert document["payload_bytes"] == 0
    assert document["payload_truncated"] is False


def test_undecodable_key_is_kept_with_replacement_characters():
    assert _record(b"{}", key=b"doc\xff").key == "doc\ufffd"


def test_long_reasons_are_cut_to_4000_characters():
    record = dlq_record(topic="t", partition=None, offset=None, key=None, value=b"{}",
                        error=InvalidEvent("schema_violation", "r" * 5000), service="s")
    assert record.reason == "r" * 4000
    _validates(record)


def test_truncating_utf8_text_mid_character_keeps_it_text():
    text = "a" * (DLQ_PAYLOAD_LIMIT - 1) + "é" * 10
    document = _validates(_record(text.encode(), error_type="too_large"))
    assert document["payload_encoding"] == "utf8"
    assert text.startswith(document["payload"])
