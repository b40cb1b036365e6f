"""Input and output stages between the request and reply topics.

Today both stages only enforce the contract: the input stage validates requests and the output
stage turns a draft into the reply for the requester's topic. The guardrail checks (PII,
injection, grounding...) plug in here and add their decisions to the reply.
"""

from __future__ import annotations

import json

from services.common.events import RagReply, RagRequest
from services.common.exceptions import InvalidEvent
from services.common.messages import decode_json, parse_model
from services.guardrails.config import MAX_DRAFT_BYTES, MAX_REQUEST_BYTES

REPLY_TOPIC_PREFIX = "rag.replies"


def screen_request(value: bytes | None) -> RagRequest:
    if value is None:
        raise InvalidEvent("schema_violation", "a request cannot be a tombstone")
    request = parse_model(RagRequest, decode_json(value, MAX_REQUEST_BYTES, "rag-request.v1"))
    if not allowed_reply_topic(request.reply_to):
        raise InvalidEvent("schema_violation", f"reply_to {request.reply_to!r} is not a reply "
                           f"topic ({REPLY_TOPIC_PREFIX} or {REPLY_TOPIC_PREFIX}.*)")
    return request


def allowed_reply_topic(topic: str) -> bool:
    """Answers may only go to reply topics: a request must not be able to write into
    docs.changes or any other topic by naming it as its reply_to."""
    return topic == REPLY_TOPIC_PREFIX or topic.startswith(REPLY_TOPIC_PREFIX + ".")


def error_reply_for(value: bytes | None, error: InvalidEvent) -> tuple[str, RagReply] | None:
    """An invalid request that still names request_id and reply_to gets an error reply, so
    the caller learns why at once instead of waiting for a timeout."""
    try:
        raw = json.loads(value or b"")
        request_id, reply_to = raw["request_id"], raw["reply_to"]
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(request_id, str) or not isinstance(reply_to, str) or not request_id:
        return None
    if not allowed_reply_topic(reply_to):
        return None
    return reply_to, RagReply(request_id=request_id[:128], status="error", answer="",
                              error=f"{error.error_type}: {error.reason}"[:2000])


def finalize_draft(value: bytes | None) -> tuple[str, RagReply]:
    """(reply topic, reply). The draft's reply_to is routing data, not part of the answer."""
    if value is None:
        raise InvalidEvent("schema_violation", "a draft cannot be a tombstone")
    draft = parse_model(RagReply, decode_json(value, MAX_DRAFT_BYTES, "rag-reply.v1"))
    if not draft.reply_to:
        raise InvalidEvent("schema_violation", "draft has no reply_to")
    return draft.reply_to, draft.model_copy(update={"reply_to": None})
