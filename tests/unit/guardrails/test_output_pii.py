"""Output PII by privacy class and clearance. A small regex detector stands in for Presidio in
most cases (hand-written, deterministic); the last test runs the real Presidio analyzer."""

import re

import pytest

from services.common.events import Citation, RetrievedChunk
from services.common.pii import PiiFinding
from services.guardrails.checks.output_pii import above_clearance, redact_output
from services.guardrails.policy import OutputPiiPolicy

pytestmark = pytest.mark.unit

PATTERNS = {"PHONE_NUMBER": r"\+?\d[\d\- ]{6,}\d", "EMAIL_ADDRESS": r"[\w.]+@[\w.]+\.\w+",
            "US_SSN": r"\b\d{3}-\d{2}-\d{4}\b", "PERSON": r"\bMarta Quell\b"}
POLICY = OutputPiiPolicy(always_redact=["US_SSN"], entities={"LOCATION": "allow"})
RESTRICTED = RetrievedChunk(chunk_id="r1", doc_id="hr", privacy_class="restricted",
                            text="Incident lead Marta Quell, phone 555-0142-77, "
                                 "mail marta.quell@quillon.example.")
PUBLIC = RetrievedChunk(chunk_id="p1", doc_id="press", privacy_class="public",
                        text="Press office: +1 202 555 0199, press@quillon.example.")


def find(text: str, entities=None, min_score: float = 0.5) -> list[PiiFinding]:
    found = []
    for entity, pattern in PATTERNS.items():
        for m in re.finditer(pattern, text):
            found.append(PiiFinding(entity, m.start(), m.end(), 0.9))
    return [f for f in found
            if not (f.entity_type == "PHONE_NUMBER" and re.fullmatch(PATTERNS["US_SSN"],
                                                                      f.text_in(text)))]


def test_clearance_order():
    assert above_clearance(RESTRICTED, "internal") and not above_clearance(RESTRICTED,
                                                                          "restricted")
    assert not above_clearance(PUBLIC, "public")


def test_pii_from_a_restricted_document_is_redacted_for_a_principal_without_clearance():
    answer = "Call Marta Quell on 555-0142-77 or write to marta.quell@quillon.example [1]."
    out = redact_output(answer, [], [RESTRICTED, PUBLIC], "internal", POLICY, find)
    assert out.answer == "Call <PERSON> on <PHONE_NUMBER> or write to <EMAIL_ADDRESS> [1]."
    assert (out.result.triggered, out.result.action) == (True, "redact")
    assert out.result.details["entities"] == ["EMAIL_ADDRESS", "PERSON", "PHONE_NUMBER"]


def test_the_same_answer_is_untouched_for_a_cleared_principal():
    answer = "Call Marta Quell on 555-0142-77 [1]."
    out = redact_output(answer, [], [RESTRICTED], "restricted", POLICY, find)
    assert out.answer == answer and not out.result.triggered and out.result.action == "allow"


def test_a_reformatted_value_is_still_recognised():
    out = redact_output("Her number is 555 0142 77.", [], [RESTRICTED], "public", POLICY, find)
    assert "555" not in out.answer and "<PHONE_NUMBER>" in out.answer


def test_pii_from_documents_within_clearance_stays():
    answer = "The press office answers on +1 202 555 0199."
    out = redact_output(answer, [], [RESTRICTED, PUBLIC], "internal", POLICY, find)
    assert out.answer == answer and not out.result.triggered


def test_always_redact_types_are_redacted_for_everyone():
    answer = "The test SSN in the manual is 078-05-1120."
    out = redact_output(answer, [], [PUBLIC], "restricted", POLICY, find)
    assert out.answer == "The test SSN in the manual is <US_SSN>."
    assert out.result.triggered


def test_citation_texts_from_restricted_documents_are_redacted_too():
    citations = [Citation(n=1, chunk_id="r1", chunk_ids=["r1"], doc_id="hr",
                          text=RESTRICTED.text),
                 Citation(n=2, chunk_id="p1", chunk_ids=["p1"], doc_id="press",
                          text=PUBLIC.text)]
    out = redact_output("See the incident page [1][2].", citations, [RESTRICTED, PUBLIC],
                        "internal", POLICY, find)
    assert out.citations[0].text == ("Incident lead <PERSON>, phone <PHONE_NUMBER>, "
                                     "mail <EMAIL_ADDRESS>.")
    assert out.citations[1].text == PUBLIC.text
    assert out.result.triggered and out.result.details["citation_redactions"] == 3


def test_entity_policy_block_and_allow():
    blocking = OutputPiiPolicy(entities={"EMAIL_ADDRESS": "block", "PERSON": "allow"})
    out = redact_output("Write to marta.quell@quillon.example, says Marta Quell.", [],
                        [RESTRICTED], "public", blocking, find)
    assert out.result.action == "block" and "EMAIL_ADDRESS" in out.result.reason
    assert "Marta Quell" in out.answer  # PERSON allowed by this policy


def test_disabled_is_skipped():
    out = redact_output("x", [], [RESTRICTED], "public", OutputPiiPolicy(enabled=False), find)
    assert out.result.action == "skip"


def test_with_the_real_presidio_detector():
    from services.common.pii import find_pii

    chunk = RetrievedChunk(
        chunk_id="r2", doc_id="hr2", privacy_class="restricted",
        text="For on-call escalation contact Daniel Okafor at daniel.okafor@quillon.example "
             "or by phone at 212-555-0187.")
    answer = "Escalate to Daniel Okafor (daniel.okafor@quillon.example, 212-555-0187) [1]."
    out = redact_output(answer, [], [chunk], "internal", OutputPiiPolicy(), find_pii)
    assert "daniel.okafor@quillon.example" not in out.answer
    assert "212-555-0187" not in out.answer
    assert "Daniel Okafor" not in out.answer
    assert out.answer.endswith("[1].")


def test_default_policy_keeps_dates_and_places_from_restricted_documents():
    from services.guardrails.policy import PACKAGED_POLICIES, load_policy_file

    policy = load_policy_file(PACKAGED_POLICIES / "default.yaml").output.pii
    chunk = RetrievedChunk(chunk_id="r3", doc_id="hr3", privacy_class="restricted",
                           text="Tanks are replaced every Tuesday in Lisbon by Marta Quell.")

    def detect(text: str, entities=None, min_score: float = 0.5) -> list[PiiFinding]:
        spans = {"DATE_TIME": "every Tuesday", "LOCATION": "Lisbon", "PERSON": "Marta Quell"}
        return [PiiFinding(kind, text.index(value), text.index(value) + len(value), 0.85)
                for kind, value in spans.items() if value in text]

    out = redact_output("Marta Quell replaces them every Tuesday in Lisbon.", [], [chunk],
                        "internal", policy, detect)
    assert out.answer == "<PERSON> replaces them every Tuesday in Lisbon."
