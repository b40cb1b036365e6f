"""Where answers may go: the reply-topic rules both guardrail stages and the rag worker apply
to every ``reply_to`` before anything is sent there."""

from __future__ import annotations

import json

from services.common.events import RagReply
from services.common.exceptions import InvalidEvent

REPLY_TOPIC_PREFIX = "rag.replies"


def allowed_reply_topic(topic: str) -> bool:
    """Answers may only go to a client's own reply topic (``rag.replies.<client>``): a request
    must not be able to write into docs.changes or any other topic by naming it as its
    reply_to. The shared ``rag.replies`` is not one: every reader of it would see every
    answer; the broker's ACLs let each client read only its own ``rag.replies.<client>*``."""
    prefix = REPLY_TOPIC_PREFIX + "."
    return topic.startswith(prefix) and len(topic) > len(prefix)


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
                              error=f"{error.error_type}: {error.reason}"[:2000],
                              error_code=error.error_type)
