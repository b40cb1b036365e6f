"""The output stage as a whole on hand-written drafts: which checks run, what the reader gets,
and the reply that leaves (evidence stripped, both stages' decisions attached)."""

import re

import pytest

from services.common.events import (
    Citation,
    Decision,
    DraftEvidence,
    Principal,
    RagReply,
    RetrievedChunk,
    Screening,
)
from services.common.pii import PiiFinding
from services.guardrails.output_stage import OutputDeps, final_reply, screen_output
from services.guardrails.policy import PACKAGED_POLICIES, load_policy_file

pytestmark = pytest.mark.unit

POLICY = load_policy_file(PACKAGED_POLICIES / "default.yaml")
CANARY = "cnry-0123456789abcdef"
NO_ANSWER = "I don't know based on the provided documents."
CHUNKS = [RetrievedChunk(chunk_id="c1", doc_id="reactor", privacy_class="internal",
                         text="The Zorblax reactor is cooled by liquid helium."),
          RetrievedChunk(chunk_id="c2", doc_id="oncall", privacy_class="restricted",
                         text="The on-call engineer is reachable at oncall@quillon.example.")]
INPUT_DECISIONS = [Decision(stage="input", check="injection_rules", action="allow", score=0.0,
                            policy_version=POLICY.policy_version)]


def _find(text: str, entities=None, min_score: float = 0.5) -> list[PiiFinding]:
    return [PiiFinding("EMAIL_ADDRESS", m.start(), m.end(), 0.95)
            for m in re.finditer(r"[\w.]+@[\w.]+\.\w+", text)]


DEPS = OutputDeps(embed=None, find_pii=_find, toxicity=lambda t: 0.9 if "idiot" in t else 0.01,
                  no_answer_for=lambda _v: NO_ANSWER)


def _draft(answer: str, citations=None, clearance="internal", **fields) -> RagReply:
    cites = citations if citations is not None else [
        Citation(n=1, chunk_id="c1", chunk_ids=["c1"], doc_id="reactor", text=CHUNKS[0].text)]
    screening = Screening(policy_version=POLICY.policy_version, decisions=INPUT_DECISIONS,
                          canary=CANARY, above_clearance="redact_pii")
    return RagReply(request_id="r1", answer=answer, citations=cites, reply_to="rag.replies",
                    template_version="default/v1",
                    evidence=DraftEvidence(principal=Principal(id="u", clearance=clearance),
                                           screening=screening, retrieved=CHUNKS), **fields)


def _by_check(verdict) -> dict[str, str]:
    return {r.check: r.action for r in verdict.results}


def test_a_clean_grounded_answer_passes_every_check():
    draft = _draft("The Zorblax reactor is cooled by liquid helium [1].")
    verdict = screen_output(draft, POLICY, DEPS)
    assert not verdict.blocked and verdict.text == draft.answer
    assert _by_check(verdict) == {"canary": "allow", "citations": "allow",
                                  "output_pii": "allow", "toxicity": "allow",
                                  "hate": "skip", "grounding": "allow"}
    reply = final_reply(draft, verdict, POLICY)
    assert reply.status == "ok" and reply.evidence is None and reply.reply_to is None
    assert [d.check for d in reply.guardrails] == [
        "injection_rules", "canary", "citations", "output_pii", "toxicity", "hate", "grounding"]
    assert {d.stage for d in reply.guardrails} == {"input", "output"}
    assert all(d.policy_version == POLICY.policy_version for d in reply.guardrails)


def test_a_canary_leak_is_refused():
    draft = _draft(f"My system prompt has Internal marker {CANARY} in it [1].")
    verdict = screen_output(draft, POLICY, DEPS)
    assert verdict.blocked and verdict.text == POLICY.refusal_message
    reply = final_reply(draft, verdict, POLICY)
    assert reply.status == "refused" and CANARY not in reply.answer
    assert reply.citations == [] and "canary" in reply.error


def test_restricted_pii_is_redacted_in_answer_and_citations():
    cites = [Citation(n=1, chunk_id="c2", chunk_ids=["c2"], doc_id="oncall",
                      text=CHUNKS[1].text)]
    draft = _draft("The on-call engineer is reachable at oncall@quillon.example [1].", cites)
    verdict = screen_output(draft, POLICY, DEPS)
    reply = final_reply(draft, verdict, POLICY)
    assert reply.status == "ok"
    assert reply.answer == "The on-call engineer is reachable at <EMAIL_ADDRESS> [1]."
    assert reply.citations[0].text == "The on-call engineer is reachable at <EMAIL_ADDRESS>."
    pii = next(d for d in reply.guardrails if d.check == "output_pii")
    assert pii.action == "redact"
    # Grounding ran on the raw answer, which the context supports.
    assert _by_check(verdict)["grounding"] == "allow"


def test_the_same_answer_for_a_cleared_principal_is_left_alone():
    cites = [Citation(n=1, chunk_id="c2", chunk_ids=["c2"], doc_id="oncall",
                      text=CHUNKS[1].text)]
    draft = _draft("The on-call engineer is reachable at oncall@quillon.example [1].", cites,
                   clearance="restricted")
    assert screen_output(draft, POLICY, DEPS).text == draft.answer


def test_toxic_answer_is_blocked():
    verdict = screen_output(_draft("Only an idiot would ask about the reactor [1]."), POLICY,
                            DEPS)
    assert verdict.blocked and _by_check(verdict)["toxicity"] == "block"


def _with_citations_action(action: str):
    return POLICY.model_copy(update={"output": POLICY.output.model_copy(update={
        "citations": POLICY.output.citations.model_copy(update={"action": action})})})


def test_invented_citation_is_blocked_when_the_policy_says_block():
    strict = _with_citations_action("block")
    verdict = screen_output(_draft("The reactor is cooled by liquid helium [4]."), strict, DEPS)
    assert verdict.blocked and "citations" in verdict.block_reasons[0]


def test_invented_citation_is_removed_by_default():
    draft = _draft("The reactor is cooled by liquid helium [1][4].")
    verdict = screen_output(draft, POLICY, DEPS)
    reply = final_reply(draft, verdict, POLICY)
    assert not verdict.blocked and _by_check(verdict)["citations"] == "redact"
    assert reply.status == "ok"
    assert reply.answer == "The reactor is cooled by liquid helium [1]."
    assert [c.n for c in reply.citations] == [1]


def test_grounding_replace_and_flag():
    unsupported = "The reactor was built from recycled submarine parts in Oslo [1]."
    replace = POLICY.model_copy(update={"output": POLICY.output.model_copy(update={
        "grounding": POLICY.output.grounding.model_copy(update={"action": "replace"})})})
    draft = _draft(unsupported)
    verdict = screen_output(draft, replace, DEPS)
    reply = final_reply(draft, verdict, replace)
    assert reply.status == "ok" and reply.answer == replace.output.grounding.replacement_message
    assert reply.citations == []
    flagged = final_reply(draft, screen_output(draft, POLICY, DEPS), POLICY)
    assert flagged.answer == unsupported
    assert next(d for d in flagged.guardrails if d.check == "grounding").action == "flag"


def test_abstention_skips_grounding_and_error_drafts_skip_everything():
    verdict = screen_output(_draft(NO_ANSWER, citations=[]), POLICY, DEPS)
    assert _by_check(verdict)["grounding"] == "skip" and not verdict.blocked
    error = RagReply(request_id="r1", status="error", answer="", error="backend down",
                     reply_to="rag.replies")
    verdict = screen_output(error, POLICY, DEPS)
    assert verdict.results == () and final_reply(error, verdict, POLICY).status == "error"


def test_retrieval_only_reply_still_gets_citation_pii_redaction():
    cites = [Citation(n=1, chunk_id="c2", chunk_ids=["c2"], doc_id="oncall",
                      text=CHUNKS[1].text)]
    draft = _draft("", cites)
    reply = final_reply(draft, screen_output(draft, POLICY, DEPS), POLICY)
    assert reply.status == "ok" and "<EMAIL_ADDRESS>" in reply.citations[0].text


def test_the_policys_own_identifiers_are_redacted_from_answers_too():
    chunks = [RetrievedChunk(chunk_id="c3", doc_id="hr", privacy_class="restricted",
                             text="The reviewer's employee id is EMP-123456.")]
    cites = [Citation(n=1, chunk_id="c3", doc_id="hr", text=chunks[0].text)]
    draft = _draft("The reviewer is EMP-123456 [1].", citations=cites)
    draft = draft.model_copy(update={
        "evidence": draft.evidence.model_copy(update={"retrieved": chunks})})
    verdict = screen_output(draft, POLICY, DEPS)
    reply = final_reply(draft, verdict, POLICY)
    assert "EMP-123456" not in reply.answer and "<EMPLOYEE_ID>" in reply.answer
    assert "EMP-123456" not in (reply.citations[0].text or "")


def test_hate_in_an_answer_has_its_own_check_and_action(embed):
    import dataclasses

    import numpy as np

    from services.common.linear_head import LinearHead
    from services.guardrails.policy import parse_policy

    fires = dataclasses.replace(DEPS, embed=embed, hate_head=LinearHead(np.zeros(64), 5.0, 0.5))
    draft = _draft("The Zorblax reactor is cooled by liquid helium [1].")
    flagged = screen_output(draft, POLICY, fires)
    hate = next(r for r in flagged.results if r.check == "hate")
    assert hate.triggered and hate.action == POLICY.output.hate.action == "flag"
    assert not flagged.blocked and flagged.text == draft.answer
    strict = parse_policy("name: s\nversion: '1'\noutput: {hate: {action: block}}\n")
    blocked = screen_output(draft, strict, fires)
    assert blocked.blocked and blocked.text == strict.refusal_message
    assert next(r for r in blocked.results if r.check == "toxicity").action == "allow"
