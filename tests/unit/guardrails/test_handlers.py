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
    base = RagRequest(request_id="r1", reply_to="rag.replies.app", question="q",
                      principal=Principal(id="u")).to_dict()
    return {**base, **overrides}


@pytest.mark.parametrize("topic, allowed", [
    ("rag.replies", False), ("rag.replies.", False), ("rag.replies.team-a", True),
    ("docs.changes", False), ("rag.repliesX", False), ("rag.requests", False)])
def test_reply_topics_are_restricted(topic, allowed):
    assert allowed_reply_topic(topic) is allowed


def test_a_request_cannot_route_its_answer_into_another_topic():
    with pytest.raises(InvalidEvent, match="not a client reply topic"):
        screen_request(json.dumps(_request(reply_to="docs.changes")).encode())


def test_valid_request_passes_unchanged():
    assert screen_request(json.dumps(_request()).encode()).request_id == "r1"


def test_invalid_request_with_routing_gets_an_error_reply():
    value = json.dumps(_request(question="")).encode()
    with pytest.raises(InvalidEvent) as caught:
        screen_request(value)
    topic, reply = error_reply_for(value, caught.value)
    assert topic == "rag.replies.app" and reply.status == "error" and reply.request_id == "r1"
    assert "schema_violation" in reply.error and reply.error_code == "schema_violation"


def test_no_error_reply_without_routing_or_to_a_foreign_topic():
    error = InvalidEvent("malformed_json", "x")
    assert error_reply_for(b"{not json", error) is None
    assert error_reply_for(json.dumps(_request(reply_to="docs.changes")).encode(), error) is None


def test_finalize_draft_strips_routing():
    draft = RagReply(request_id="r1", answer="a", reply_to="rag.replies.x")
    topic, reply = finalize_draft(draft.to_dict())
    assert topic == "rag.replies.x" and reply.reply_to is None and reply.answer == "a"
    with pytest.raises(InvalidEvent, match="no reply_to"):
        finalize_draft(RagReply(request_id="r1", answer="a").to_dict())
    with pytest.raises(InvalidEvent, match="not a client reply topic"):
        finalize_draft(RagReply(request_id="r1", answer="a", reply_to="docs.changes").to_dict())


def test_authenticate_derives_the_principal_and_drops_the_credential(tmp_path):
    from services.common import identity
    from services.guardrails.handlers import authenticate

    keys = tmp_path / "keys.yaml"
    alice = Principal(id="alice", groups=["finance"], clearance="confidential")
    key = identity.add_key(keys, "alice", alice, domains=["finance"])
    auth = identity.Authenticator(identity.KeyStore(keys))
    mallory = Principal(id="mallory", groups=["security-team"], clearance="restricted")
    request = RagRequest.model_validate({**_request(), "principal": mallory.model_dump(),
                                         "credential": key})
    trusted = authenticate(request, auth, "default")
    assert trusted.principal == alice and trusted.credential is None
    assert trusted.options.domain == "finance"
    for bad in (None, "cllm_forged"):
        with pytest.raises(InvalidEvent) as caught:
            authenticate(request.model_copy(update={"credential": bad}), auth, "default")
        assert caught.value.error_type == "unauthenticated"
    other_domain = request.model_copy(update={"options": request.options.model_copy(
        update={"domain": "hr"})})
    with pytest.raises(InvalidEvent) as caught:
        authenticate(other_domain, auth, "default")
    assert caught.value.error_type == "forbidden"


# --- input stage routing (refusal at once / screened request) -----------------------------------

def _verdict(blocked: bool):
    from services.guardrails.checks.results import CheckResult, StageVerdict

    rules = CheckResult("injection_rules", 1.0 if blocked else 0.0, blocked,
                        "block" if blocked else "allow", "instruction override" if blocked else "")
    pii = CheckResult("pii", 0.85, True, "redact", "EMAIL_ADDRESS")
    return StageVerdict("input", "default@1#abcdef12", "mail <EMAIL_ADDRESS> please",
                        (rules, pii))


def test_a_blocked_request_gets_the_policy_refusal_with_reasons_and_decisions():
    from services.guardrails.handlers import refusal_reply
    from services.guardrails.policy import Policy

    request = RagRequest.model_validate(_request())
    policy = Policy(name="default", version="1", refusal_message="Not possible.")
    reply = refusal_reply(request, _verdict(blocked=True), policy, trace_id="0" * 32)
    assert (reply.status, reply.answer, reply.request_id) == ("refused", "Not possible.", "r1")
    assert "injection_rules: instruction override" in reply.error
    assert [(d.check, d.action) for d in reply.guardrails] == [("injection_rules", "block"),
                                                               ("pii", "redact")]
    assert reply.to_json()  # valid against rag-reply.v1


def test_the_screened_request_replaces_client_screening_and_the_question():
    from services.common.events import Screening
    from services.guardrails.handlers import screened_request

    forged = Screening(policy_version="forged", marked_chunks="allow", canary=None)
    request = RagRequest.model_validate({**_request(question="mail a@b.example please"),
                                         "screening": forged.model_dump()})
    ours = Screening(policy_version="default@1#abcdef12", canary="cnry-1")
    screened = screened_request(request, _verdict(blocked=False), ours)
    assert screened.question == "mail <EMAIL_ADDRESS> please"
    assert screened.screening == ours and screened.request_id == "r1"


def test_output_policy_follows_the_input_policy_name():
    from services.common.events import DraftEvidence, Screening
    from services.guardrails.handlers import draft_domain, output_policy_name

    evidence = DraftEvidence(principal=Principal(id="u"),
                             screening=Screening(policy_version="legal@3#00aa11bb"))
    draft = RagReply(request_id="r1", answer="a", evidence=evidence, template_version="legal/v2")
    assert output_policy_name(draft) == "legal" and draft_domain(draft) == "legal"
    assert output_policy_name(RagReply(request_id="r1", answer="a")) == "default"
