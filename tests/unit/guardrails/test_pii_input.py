import pytest

from services.common.pii import PatternSpec, find_patterns, find_pii
from services.guardrails.checks.pii import check_pii
from services.guardrails.policy import PiiPolicy, PolicyError, parse_policy

pytestmark = pytest.mark.unit


def _types(text: str) -> set[str]:
    return {f.entity_type for f in find_pii(text)}


@pytest.mark.parametrize("text", [
    "my key is AKIAIOSFODNN7EXAMPLE",
    "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9abcdefghijklmnop",
    "use token ghp_abcdefghijklmnopqrstuvwxyz0123456789",
    "api_key = 'sk-abcdefghijklmnopqrstuvwx'",
    "connect to postgres://app:hunter2pass@db.internal:5432/main",
    "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----",
])
def test_credentials_are_recognized_as_secrets(text):
    assert "SECRET" in _types(text)


def test_presidio_entities_still_found():
    found = _types("Mail jane.doe@example.com, IBAN DE89370400440532013000, card "
                   "4111 1111 1111 1111")
    assert {"EMAIL_ADDRESS", "IBAN_CODE", "CREDIT_CARD"} <= found


def test_configured_patterns_find_internal_ids():
    specs = [PatternSpec("EMPLOYEE_ID", r"\bEMP-\d{6}\b", 0.9)]
    found = find_patterns("ask EMP-004211 or EMP-12", specs)
    assert [(f.entity_type, f.start, f.end) for f in found] == [("EMPLOYEE_ID", 4, 14)]


POLICY = PiiPolicy(entities={"EMAIL_ADDRESS": "redact", "SECRET": "block", "LOCATION": "allow",
                             "PERSON": "flag"},
                   patterns={"EMPLOYEE_ID": {"pattern": r"\bEMP-\d{6}\b"}})


def test_redact_replaces_values_and_keeps_the_rest():
    result, text = check_pii("Write to jane.doe@example.com about EMP-004211 in Berlin", POLICY)
    assert result.action == "redact" and result.triggered
    assert text == "Write to <EMAIL_ADDRESS> about <EMPLOYEE_ID> in Berlin"
    assert result.details["redact"] == {"EMAIL_ADDRESS": 1, "EMPLOYEE_ID": 1}
    assert "jane" not in str(result.details) + result.reason  # no values in the audit trail


def test_block_wins_over_redact():
    result, text = check_pii("mail a@b.com the key AKIAIOSFODNN7EXAMPLE", POLICY)
    assert result.action == "block" and "SECRET" in result.reason
    assert "AKIA" not in text


def test_allow_leaves_text_and_does_not_trigger():
    result, text = check_pii("Is the Berlin office open?", POLICY)
    assert not result.triggered and result.action == "allow"
    assert text == "Is the Berlin office open?"


def test_flag_records_without_changing_the_text():
    result, text = check_pii("Did Angela Merkel visit?", POLICY)
    assert result.action == "flag" and text == "Did Angela Merkel visit?"


def test_disabled_pii_is_skipped():
    result, text = check_pii("a@b.com", PiiPolicy(enabled=False))
    assert result.action == "skip" and text == "a@b.com"


@pytest.mark.parametrize("bad", ["'('", "'a*'"])
def test_invalid_patterns_are_rejected_at_load(bad):
    with pytest.raises(PolicyError, match="patterns"):
        parse_policy(f"name: t\nversion: '1'\ninput:\n  pii:\n    patterns:\n"
                     f"      EMPLOYEE_ID: {{pattern: {bad}}}\n")


@pytest.mark.parametrize("text, value", [
    ("I live at 221B Baker Street, London", "221B Baker Street"),
    ("Send it to 1755 Nelson Mandela Drive please", "1755 Nelson Mandela Drive"),
    ("Die Adresse ist Ziegelgasse 26 in Wien", "Ziegelgasse 26"),
])
def test_street_addresses_are_recognized(text, value):
    # one finding holding the street; it may run on into the town ("..., London")
    found = [f for f in find_pii(text) if f.entity_type == "ADDRESS"]
    assert len(found) == 1 and value in found[0].text_in(text)


@pytest.mark.parametrize("text", [
    "Call 415-555-0134 ext 12 tomorrow",
    "reach me on +44 20 7946 0958",
    "my phone number is 21 212 133 2727",
])
def test_phone_formats_presidio_rejects_are_recognized(text):
    assert "PHONE_NUMBER" in _types(text)


@pytest.mark.parametrize("text", ["Temperatures were 20 25 30 last week",
                                  "Version 2.0 shipped in 1999"])
def test_numbers_without_phone_shape_or_context_are_not_phones(text):
    assert "PHONE_NUMBER" not in _types(text)


# Names, places, organisations and dates beside identifiers, and next to them: what the
# named-entity pass finds and what the pattern recognizers find in the same sentences.
MIXED = [
    "Maria Lopez (maria.lopez@example.com, +44 20 7946 0958) moved to 12 Baker Street, London.",
    "Did Chopin leave Warsaw in November 1830 for Vienna and Paris?",
    "Wire it to IBAN DE89370400440532013000 for Acme Corp before 3 March 2024.",
    "Card 4111 1111 1111 1111 belongs to John Smith of Springfield, SSN 078-05-1120.",
    "Ask EMP-004211 in Berlin, or call Dr. Ahmed Khan on 415-555-0132 tomorrow.",
    "Which Swiss and French banks opened offices in Singapore after 2010?",
    "Send the contract to 221B Baker St, London NW1 6XE, attention Sherlock Holmes.",
    "api_key = 'sk-abcdefghijklmnopqrstuvwx' was committed by Alice on Friday.",
]


def test_the_packaged_policy_skips_the_entity_pass_with_the_same_results(monkeypatch):
    """Every type the named-entity model yields is allowed in the packaged input policy, so
    the pass is skipped there: same result, same redacted text, on sentences where it fires."""
    from services.guardrails.checks import pii as pii_check
    from services.guardrails.checks.pii_detect import find_pii_fast, ner_entity_types
    from services.guardrails.policy import PACKAGED_POLICIES, load_policy_file

    assert {"PERSON", "LOCATION", "ORGANIZATION", "DATE_TIME", "NRP"} == ner_entity_types()
    policy = load_policy_file(PACKAGED_POLICIES / "default.yaml").input.pii
    assert not pii_check.needs_ner(policy)
    skipped = [check_pii(text, policy) for text in MIXED]
    monkeypatch.setattr(pii_check, "needs_ner", lambda _policy: True)
    assert [check_pii(text, policy) for text in MIXED] == skipped
    assert sum(r.action in ("redact", "block") for r, _ in skipped) == 6
    assert any(f.entity_type in ner_entity_types() for f in find_pii_fast(MIXED[1]))
    assert not any(f.entity_type in ner_entity_types()
                   for f in find_pii_fast(MIXED[1], ner=False) if f.entity_type != "DATE_TIME")


def test_a_policy_that_redacts_names_gets_the_entity_pass():
    from services.guardrails.checks import pii as pii_check

    names = PiiPolicy(entities={"PERSON": "redact"})
    assert pii_check.needs_ner(names)
    result, redacted = check_pii("Did Chopin leave Warsaw for Vienna?", names)
    assert result.action == "redact" and "<PERSON>" in redacted and "Chopin" not in redacted


class _RecordingPhoneRecognizer:
    def __init__(self) -> None:
        self.seen: list[str] = []

    def analyze(self, text, entities, nlp_artifacts=None):
        self.seen.append(text)
        return []


@pytest.mark.parametrize(("text", "runs"), [
    ("The treaty of 1648 ended the war; a second one followed in 1864.", False),
    ("Rooms 12, 14 and 16 were closed in 2019.", False),
    ("Call 415-555-0134 tomorrow", True),
    ("reach me on +44 (20) 7946 0958", True),
    ("tel. 030/1234-56", True),
    ("ext x12345", True),
])
def test_the_phone_matcher_runs_only_where_digits_form_a_number(text, runs):
    """Years scattered through a paragraph add up to five digits but are no phone number:
    only a run of digits joined by phone separators sends the text to ``phonenumbers``."""
    from services.guardrails.checks.pii_detect import _DigitGated

    inner = _RecordingPhoneRecognizer()
    _DigitGated(inner).analyze(text, ["PHONE_NUMBER"])
    assert inner.seen == ([text] if runs else [])
