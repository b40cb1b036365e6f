"""The embedder's batch arithmetic: embed each missing text once per batch, and credit it to
exactly one document so status counts add up."""

import json

import pytest

from services.common.exceptions import InvalidEvent
from services.embedder.handlers import (
    EmbedPlan,
    credit_embedded,
    decode_work,
    plan_embeddings,
)
from tests.support.chunk_work import sha as _sha
from tests.support.chunk_work import work as _work

pytestmark = pytest.mark.unit


def test_plan_skips_cached_dedupes_and_keeps_first_seen_order():
    works = [_work("a", ["one", "two", "one"]), _work("b", ["three", "two", "four"])]
    plan = plan_embeddings(works, cached={_sha("three")})
    assert plan == EmbedPlan([_sha("one"), _sha("two"), _sha("four")], ["one", "two", "four"])


def test_plan_ignores_deletes():
    # A delete carrying chunks is malformed upstream; it must still never cost a model call.
    works = [_work("gone", ["five"], op="delete"), _work("kept", ["six"])]
    assert plan_embeddings(works, cached=set()) == EmbedPlan([_sha("six")], ["six"])


def test_plan_for_a_fully_cached_batch_is_empty():
    assert plan_embeddings([_work("a", ["x", "y"])], {_sha("x"), _sha("y")}) == EmbedPlan([], [])


def test_plan_does_not_mutate_the_cached_set():
    cached = {_sha("x")}
    plan_embeddings([_work("a", ["x", "y"])], cached)
    assert cached == {_sha("x")}


def test_shared_hash_is_credited_to_the_first_item_only():
    works = [_work("a", ["one", "two"]), _work("b", ["two", "three"]), _work("c", ["one"])]
    embedded = {_sha("one"), _sha("two"), _sha("three")}
    assert credit_embedded(works, embedded) == [2, 1, 0]
    assert embedded == {_sha("one"), _sha("two"), _sha("three")}


def test_credit_counts_a_repeated_chunk_once():
    assert credit_embedded([_work("a", ["one", "one"])], {_sha("one")}) == [1]
    assert credit_embedded([_work("a", ["one"])], set()) == [0]


def test_decode_work_rejects_a_tombstone():
    with pytest.raises(InvalidEvent) as caught:
        decode_work(None, 10_000)
    assert caught.value.error_type == "schema_violation"
    assert "tombstone" in caught.value.reason


def test_decode_work_rejects_a_schema_violation():
    raw = {"doc_id": "a", "version": 1, "op": "upsert", "event_time": "2026-01-01T00:00:00Z",
           "chunks": [{"chunk_id": "c", "ordinal": 0, "content_hash": "nope", "text": "t",
                       "word_count": 1, "embed": True}]}
    with pytest.raises(InvalidEvent) as caught:
        decode_work(json.dumps(raw).encode(), 10_000)
    assert caught.value.error_type == "schema_violation"
    assert "chunks/0/content_hash" in caught.value.reason


def test_decode_work_round_trips_and_checks_size():
    work = _work("a", ["one two", "three"])
    assert decode_work(work.to_json(), 10_000) == work
    with pytest.raises(InvalidEvent) as caught:
        decode_work(work.to_json(), 10)
    assert caught.value.error_type == "too_large"
