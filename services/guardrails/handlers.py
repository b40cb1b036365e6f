"""Input and output stages between the request and reply topics, as pure functions.

The input stage validates a request (contract, reply-topic allow-list), then either refuses it
at once (the reply names the checks that blocked it; nothing reaches retrieval or the model) or
forwards it with the screened question and the guardrail's directives (``Screening``), which
always replace whatever the client put there. The output stage turns a draft into the reply:
its checks live in ``output_stage``; here only the contract and routing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from services.common import identity
from services.common.events import RagReply, RagRequest, Screening
from services.common.exceptions import InvalidEvent
from services.common.messages import decode_json, parse_model
from services.common.reply_routing import (  # noqa: F401 - the stage's routing rules
    REPLY_TOPIC_PREFIX,
    allowed_reply_topic,
    error_reply_for,
)
from services.common.topics import RAG_REQUESTS, spec
from services.guardrails.checks.results import StageVerdict
from services.guardrails.config import MAX_REQUEST_BYTES
from services.guardrails.policy import DEFAULT_POLICY, Policy


def screen_request(value: bytes | None) -> RagRequest:
    if value is None:
        raise InvalidEvent("schema_violation", "a request cannot be a tombstone")
    payload = decode_json(value, MAX_REQUEST_BYTES, spec(RAG_REQUESTS).schema)
    request = parse_model(RagRequest, payload)
    if not allowed_reply_topic(request.reply_to):
        raise InvalidEvent("forbidden", f"reply_to {request.reply_to!r} is not a client reply "
                           f"topic ({REPLY_TOPIC_PREFIX}.<client>)")
    return request


def finalize_draft(payload: dict[str, Any]) -> tuple[str, RagReply]:
    """(reply topic, reply) of a draft whose signature the processor has verified. The draft's
    reply_to is routing data, not part of the answer."""
    draft = parse_model(RagReply, payload)
    if not draft.reply_to:
        raise InvalidEvent("schema_violation", "draft has no reply_to")
    if not allowed_reply_topic(draft.reply_to):
        raise InvalidEvent("forbidden", f"draft reply_to {draft.reply_to!r} is not a client "
                           "reply topic")
    return draft.reply_to, draft.model_copy(update={"reply_to": None, "handoff": None})


def authenticate(request: RagRequest, authenticator: identity.Authenticator,
                 default_domain: str) -> RagRequest:
    """The request as the platform believes it: the principal and policy domain derived from
    its verified credential, the credential itself dropped (it never travels further)."""
    try:
        who = authenticator.verify(request.credential)
        domain = who.domain_for(request.options.domain, default_domain)
    except identity.Unauthenticated as exc:
        raise InvalidEvent("unauthenticated", str(exc)) from exc
    except identity.Forbidden as exc:
        raise InvalidEvent("forbidden", str(exc)) from exc
    options = request.options.model_copy(update={"domain": domain})
    return request.model_copy(update={"principal": who.principal, "credential": None,
                                      "options": options, "screening": None, "handoff": None})


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
