import json

import pytest

from services.common.events import Principal, RagReply, RagRequest
from services.common.exceptions import InvalidEvent
from services.guardrails.handlers import (
    allowed_reply_topic,
    error_reply_for,
    finalize_draft,
    screen_request,
)

pytestmark = pytest.mark.unit


def _request(**overrides) -> dict:
    base = RagRequest(request_id="r1", reply_to="rag.replies", question="q",
                      principal=Principal(id="u")).to_dict()
    return {**base, **overrides}


@pytest.mark.parametrize("topic, allowed", [
    ("rag.replies", True), ("rag.replies.team-a", True), ("docs.changes", False),
    ("rag.repliesX", False), ("rag.requests", False)])
def test_reply_topics_are_restricted(topic, allowed):
    assert allowed_reply_topic(topic) is allowed


def test_a_request_cannot_route_its_answer_into_another_topic():
    with pytest.raises(InvalidEvent, match="not a reply topic"):
        screen_request(json.dumps(_request(reply_to="docs.changes")).encode())


def test_valid_request_passes_unchanged():
    assert screen_request(json.dumps(_request()).encode()).request_id == "r1"


def test_invalid_request_with_routing_gets_an_error_reply():
    value = json.dumps(_request(question="")).encode()
    with pytest.raises(InvalidEvent) as caught:
        screen_request(value)
    topic, reply = error_reply_for(value, caught.value)
    assert topic == "rag.replies" and reply.status == "error" and reply.request_id == "r1"
    assert "schema_violation" in reply.error


def test_no_error_reply_without_routing_or_to_a_foreign_topic():
    error = InvalidEvent("malformed_json", "x")
    assert error_reply_for(b"{not json", error) is None
    assert error_reply_for(json.dumps(_request(reply_to="docs.changes")).encode(), error) is None


def test_finalize_draft_strips_routing():
    draft = RagReply(request_id="r1", answer="a", reply_to="rag.replies.x")
    topic, reply = finalize_draft(draft.to_json())
    assert topic == "rag.replies.x" and reply.reply_to is None and reply.answer == "a"
    with pytest.raises(InvalidEvent, match="no reply_to"):
        finalize_draft(RagReply(request_id="r1", answer="a").to_json())
