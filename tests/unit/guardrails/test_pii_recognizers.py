"""The guardrails' own PII recognizers and the chunked detector (issue #14, item 4-5).

Values are written for these tests (reserved or checksum-valid test numbers), never taken from
the benchmark data."""

from __future__ import annotations

import pytest

from services.common.pii import PiiFinding, find_pii
from services.common.pii_recognizers import (
    AddressPartsRecognizer,
    CardNumberRecognizer,
    InternationalPhoneRecognizer,
    PersonContextRecognizer,
    luhn,
    phone_score,
)
from services.guardrails.checks.pii import check_pii
from services.guardrails.checks.pii_detect import chunks, find_pii_fast, joined
from services.guardrails.policy import PiiPolicy

POLICY = PiiPolicy(entities={"LOCATION": "allow", "DATE_TIME": "allow", "NRP": "allow",
                             "ORGANIZATION": "allow", "URL": "allow"})


def spans(recognizer: object, text: str, threshold: float = 0.5) -> list[str]:
    return [text[s:e] for s, e, score in recognizer.candidates(text)  # type: ignore[attr-defined]
            if score >= threshold]


@pytest.mark.parametrize("text, number", [
    ("Call me on +44 20 7946 0958 tomorrow", "+44 20 7946 0958"),
    ("my mobile: +49 151 23456789", "+49 151 23456789"),
    ("Tel. +33 1 23 45 67 89", "+33 1 23 45 67 89"),
    ("office 0049 30 901820", "0049 30 901820"),
    ("Fax: (0151) 4960327", "(0151) 4960327"),
    ("please call 0373278470 after five", "0373278470"),
    ("reach me at (212) 555-0143 x204", "(212) 555-0143 x204"),
    ("ring 07 5331 0577 in Brisbane", "07 5331 0577"),
])
def test_phone_numbers_in_national_and_international_formats(text: str, number: str) -> None:
    assert number in spans(InternationalPhoneRecognizer(), text)


@pytest.mark.parametrize("text", [
    "The release on 2024-05-17 fixed it", "Version 72084.32 fixes the login bug",
    "SSN 123-45-6789 on the form", "the host 192.168.100.254 is down",
    "card 4111-1111-1111-1111 was declined", "We sold 12000 units",
    "Is GB82 WEST 1234 5698 7654 32 a valid IBAN?", "order 4417123456 shipped",
])
def test_not_phone_numbers(text: str) -> None:
    assert spans(InternationalPhoneRecognizer(), text) == []


def test_phone_score_tiers() -> None:
    assert phone_score("+44 20 7946 0958") == pytest.approx(0.85)
    assert phone_score("12345") is None
    assert phone_score("1234567890123456") is None


def test_cards_presidio_misses_need_luhn_issuer_and_a_cue() -> None:
    maestro = "501800000009"  # 12 digits, Luhn-valid
    assert luhn(maestro)
    assert spans(CardNumberRecognizer(), f"charge my card {maestro} please") == [maestro]
    assert spans(CardNumberRecognizer(), f"reference {maestro} please") == []
    assert spans(CardNumberRecognizer(), "charge my card 501800000008 please") == []


@pytest.mark.parametrize("text, address", [
    ("She lives at 87 Jakobi 69, Laane", "87 Jakobi 69"),
    ("Billing address: Ivysteeg 695", "Ivysteeg 695"),
    ("Ship it to 6817 Stewart Passage.", "6817 Stewart Passage."),
    ("I moved to Via Ponti, 31 last month", "Via Ponti, 31"),
    ("Our new office is at Louise-Wesack-Weg 8", "Louise-Wesack-Weg 8"),
    ("Ship it to Studio 8, Parsons Fords.", "Studio 8, Parsons Fords."),
    ("deliver to Apt. 614 please", "Apt. 614"),
    ("ZIP: 11164", "11164"),
])
def test_street_address_parts(text: str, address: str) -> None:
    # the span may run on into the town or postcode after the street ("87 Jakobi 69, Laane")
    assert any(address in found for found in spans(AddressPartsRecognizer(), text))


@pytest.mark.parametrize("text", [
    "I have 3 apples and 5 oranges", "Chapter 12 Summary 4", "In 2019 Apple sold 12 phones",
])
def test_no_address_without_a_street_or_a_cue(text: str) -> None:
    assert spans(AddressPartsRecognizer(), text) == []


def test_person_after_a_title_or_before_lives_at_names_only_the_name() -> None:
    rec = PersonContextRecognizer()
    assert spans(rec, "I'd like to join accounts with ms. Wijtze") == ["Wijtze"]
    assert spans(rec, "Filip lives on Nassaustraat 123") == ["Filip"]
    assert spans(rec, "She lives at 12 Elm Street") == []
    assert spans(rec, "The report was written by Júlia Freitas.") == ["Júlia Freitas"]


def test_chunks_cover_the_text_and_end_at_sentence_ends() -> None:
    text = " ".join(f"Sentence number {i} is here." for i in range(200))
    pieces = chunks(text, size=300)
    assert len(pieces) > 5
    assert "".join(p for _, p in pieces) == text
    assert all(text[o:o + len(p)] == p for o, p in pieces)
    assert all(len(p) <= 600 for _, p in pieces)


def test_findings_in_later_chunks_carry_their_offsets() -> None:
    text = "Nothing personal here. " * 60 + "Write to jane.roe@example.com today."
    found = [f for f in find_pii_fast(text) if f.entity_type == "EMAIL_ADDRESS"]
    assert [text[f.start:f.end] for f in found] == ["jane.roe@example.com"]


def test_joined_covers_the_union_of_overlapping_findings() -> None:
    merged = joined([PiiFinding("PHONE_NUMBER", 5, 19, 0.7), PiiFinding("DATE_TIME", 12, 22, 0.85),
                     PiiFinding("PERSON", 30, 35, 0.85)])
    assert [(f.entity_type, f.start, f.end) for f in merged] == [
        ("DATE_TIME", 5, 22), ("PERSON", 30, 35)]


def test_a_redacted_type_wins_over_an_allowed_one_it_overlaps() -> None:
    # spaCy reads part of this number as a date (allowed); the phone number is redacted whole
    result, text = check_pii("Fax: (0151) 4960327", POLICY)
    assert result.action == "redact"
    assert "4960327" not in text and "0151" not in text


@pytest.mark.parametrize("text", [
    "Please have the manager call me at 555-0143, I'd like to talk to Angela Merkel.",
    "My card 4111 1111 1111 1111 and SSN 078-05-1120; mail me at a.b@example.org",
    "John Smith lives at 221B Baker Street, London. Call +44 20 7946 0958.",
    ("Lorem ipsum dolor sit amet. " * 40) + "Contact Maria Garcia at 0049 30 901820.",
])
def test_nothing_the_previous_detector_redacted_is_left(text: str) -> None:
    _, redacted = check_pii(text, POLICY)
    for finding in find_pii(text):
        if POLICY.action_for(finding.entity_type) != "allow":
            assert finding.text_in(text) not in redacted


def test_length_groups_keep_long_and_short_texts_apart() -> None:
    from services.common.embeddings import length_groups

    texts = ["a" * 2000, "b" * 1200, "c" * 900, "d" * 80, "e" * 60, "f" * 10]
    groups = [[texts[i] for i in g] for g in length_groups([len(t) for t in texts])]
    assert sorted(t for g in groups for t in g) == sorted(texts)
    assert all(len(g[-1]) >= 0.5 * len(g[0]) for g in groups)
    assert [len(g) for g in groups] == [2, 1, 2, 1]
