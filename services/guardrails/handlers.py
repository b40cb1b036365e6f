"""Input and output stages between the request and reply topics, as pure functions.

The input stage validates a request (contract, reply-topic allow-list), then either refuses it
at once (the reply names the checks that blocked it; nothing reaches retrieval or the model) or
forwards it with the screened question and the guardrail's directives (``Screening``), which
always replace whatever the client put there. The output stage turns a draft into the reply:
its checks live in ``output_stage``; here only the contract and routing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from services.common.events import RagReply, RagRequest, Screening
from services.common.exceptions import InvalidEvent
from services.common.messages import decode_json, parse_model
from services.guardrails.checks.results import StageVerdict
from services.guardrails.config import MAX_DRAFT_BYTES, MAX_REQUEST_BYTES
from services.guardrails.policy import DEFAULT_POLICY, Policy

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


def refusal_reply(request: RagRequest, verdict: StageVerdict, policy: Policy,
                  trace_id: str | None = None) -> RagReply:
    """The answer to a blocked request: the policy's refusal, the reasons and every decision."""
    return RagReply(request_id=request.request_id, status="refused",
                    answer=policy.refusal_message, guardrails=verdict.decisions(),
                    error=("refused by the input guardrails: "
                           + "; ".join(verdict.block_reasons))[:2000],
                    trace_id=trace_id)


def screened_request(request: RagRequest, verdict: StageVerdict, screening: Screening,
                     history: Sequence[str] | None = None) -> RagRequest:
    """What the rag worker gets: the screened question and history (normalized, PII redacted)
    and the guardrail's directives. A client-supplied ``screening`` never survives this step."""
    update: dict[str, Any] = {"question": verdict.text, "screening": screening}
    if history is not None:
        update["history"] = [turn.model_copy(update={"content": text})
                             for turn, text in zip(request.history, history, strict=True)]
    return request.model_copy(update=update)


def output_policy_name(draft: RagReply) -> str:
    """The output stage applies the policy the input stage chose for this request (named in the
    screening directives the draft carries back), in its current version."""
    evidence = draft.evidence
    if evidence is None or evidence.screening is None:
        return DEFAULT_POLICY
    return evidence.screening.policy_version.partition("@")[0] or DEFAULT_POLICY


def draft_domain(draft: RagReply) -> str | None:
    """The prompt domain the answer was generated under (``default/v1`` → ``default``)."""
    return draft.template_version.partition("/")[0] if draft.template_version else None
