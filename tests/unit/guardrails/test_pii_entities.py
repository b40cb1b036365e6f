"""Per-entity cases for the PII detector (issue #14, item 4): what must be found, and the
look-alikes that must not be.

Every value here is written for these tests (reserved phone ranges, checksum-valid test card
and IBAN numbers, invented streets and people), never taken from the benchmark data. The
detector is the one every path runs: ``find_pii_fast`` (questions) and ``find_pii`` (ingest,
training data, cited chunks) must agree on the entity types they find.
"""

from __future__ import annotations

import pytest

from services.common.pii import PiiFinding, find_pii
from services.common.pii_recognizers import address_tail, refine
from services.guardrails.checks.pii_detect import find_pii_fast

pytestmark = pytest.mark.unit


def found(text: str, entity: str) -> list[str]:
    return [text[f.start:f.end] for f in find_pii_fast(text) if f.entity_type == entity]


def covered(text: str, value: str, entity: str) -> bool:
    """Every character of ``value`` lies inside a finding of ``entity``."""
    start = text.index(value)
    spans = [(f.start, f.end) for f in find_pii_fast(text) if f.entity_type == entity]
    return all(any(s <= i < e for s, e in spans) for i in range(start, start + len(value)))


# --- phone numbers --------------------------------------------------------------------------

@pytest.mark.parametrize("text, number", [
    ("Call me on +44 20 7946 0958 tomorrow", "+44 20 7946 0958"),
    ("WhatsApp: +34 612 34 56 78", "+34 612 34 56 78"),
    ("Festnetz (030) 12345678, bitte nach 18 Uhr", "(030) 12345678"),
    ("text me at 06 12 34 56 78 when you land", "06 12 34 56 78"),
    ("my cell is 0612345678", "0612345678"),
    ("ring 0039 06 1234 5678 from abroad", "0039 06 1234 5678"),
    ("Please call me back on 055685616 after five.", "055685616"),
])
def test_phone_numbers(text: str, number: str) -> None:
    assert covered(text, number, "PHONE_NUMBER")


@pytest.mark.parametrize("text", [
    "Version 10.4.2 fixes the login bug", "The meeting is on 2024-05-17 at 10:30",
    "We sold 12000 units in 2023, up 14%", "Invoice INV-20931 totals 430.50 EUR",
    "Build 4417 took 35 minutes", "ISBN 978-3-16-148410-0 is out of print",
])
def test_not_phone_numbers(text: str) -> None:
    assert found(text, "PHONE_NUMBER") == []


def test_a_phone_number_that_is_also_a_valid_nhs_number_is_a_phone_in_a_phone_context() -> None:
    # 0373278470 passes the NHS mod-11 check; after "call me back on" it is a phone number
    text = "Please call me back on 0373278470 after five."
    assert found(text, "PHONE_NUMBER") == ["0373278470"]
    assert found(text, "UK_NHS") == []
    assert found("NHS number 0373278470 for the patient", "UK_NHS") == ["0373278470"]


# --- cards, IBAN, SSN, e-mail ---------------------------------------------------------------

@pytest.mark.parametrize("text, value, entity", [
    ("Charge it to my card 4111 1111 1111 1111 please.", "4111 1111 1111 1111", "CREDIT_CARD"),
    ("card 5555-5555-5555-4444, expires next year", "5555-5555-5555-4444", "CREDIT_CARD"),
    ("Maestro card 6759649826438453 declined", "6759649826438453", "CREDIT_CARD"),
    ("My IBAN is DE89 3704 0044 0532 0130 00", "DE89 3704 0044 0532 0130 00", "IBAN_CODE"),
    ("wire it to GB82WEST12345698765432 by Friday", "GB82WEST12345698765432", "IBAN_CODE"),
    ("My SSN is 536-22-1844.", "536-22-1844", "US_SSN"),
    ("cc ana.lima+billing@example.org on the thread", "ana.lima+billing@example.org",
     "EMAIL_ADDRESS"),
])
def test_identifiers(text: str, value: str, entity: str) -> None:
    assert covered(text, value, entity)


@pytest.mark.parametrize("text, entity", [
    ("Order 4111111111111112 shipped", "CREDIT_CARD"),  # fails Luhn
    ("reference 501800000009 please", "CREDIT_CARD"),  # Luhn-valid, no payment cue
    ("Is DE00 3704 0044 0532 0130 00 valid?", "IBAN_CODE"),  # wrong check digits
    ("Part number 123-45-678 is out of stock", "US_SSN"),
])
def test_identifier_look_alikes(text: str, entity: str) -> None:
    assert found(text, entity) == []


# --- street addresses -----------------------------------------------------------------------

@pytest.mark.parametrize("text, address", [
    ("Ship it to 12 Larkfield Close, Ashby, LE65 2QT please",
     "12 Larkfield Close, Ashby, LE65 2QT"),
    ("Billing address: 4410 Orchard Hollow Rd, Suite 300, Dayton, OH 45402",
     "4410 Orchard Hollow Rd, Suite 300, Dayton, OH 45402"),
    ("Send it to P.O. Box 7731, Tulsa", "P.O. Box 7731"),
    ("Unsere Adresse: Lindenweg 14, 35039 Marburg", "Lindenweg 14, 35039 Marburg"),
    ("deliver to Postfach 10 01 44", "Postfach 10 01 44"),
    ("I moved to 7, rue des Tanneurs, 67000 Strasbourg last month",
     "7, rue des Tanneurs, 67000 Strasbourg"),
    ("Our new office is at Via Garibaldi, 21, 20121 Milano", "Via Garibaldi, 21, 20121 Milano"),
    ("Ship it to Calle de Toledo 44, 28005 Madrid.", "Calle de Toledo 44, 28005 Madrid"),
    ("Billing address: Rua das Flores, 118, 4050-262 Porto", "Rua das Flores, 118, 4050-262 Porto"),
    ("She lives at Keizersgracht 412, 1016 GC Amsterdam", "Keizersgracht 412, 1016 GC Amsterdam"),
    ("Our office is at ul. Długa 5/7, 00-238 Warszawa", "ul. Długa 5/7, 00-238 Warszawa"),
    ("Ship it to Storgatan 9, 411 38 Göteborg.", "Storgatan 9, 411 38 Göteborg"),
    ("Billing address: Nørregade 30, 1165 København", "Nørregade 30, 1165 København"),
    ("Ship it to 3/48 Harbour Parade, Cairns QLD 4870", "3/48 Harbour Parade"),
    ("Delivery to Apartado de Correos 2210, Sevilla", "Apartado de Correos 2210"),
    ("Mailing address:\nFlat 3\n17 Thornbury Mews\nBristol\nBS8 1QU\n\nThanks, Ana",
     "17 Thornbury Mews\nBristol\nBS8 1QU"),
])
def test_addresses_are_redacted_whole(text: str, address: str) -> None:
    assert covered(text, address, "ADDRESS")


@pytest.mark.parametrize("text", [
    "I have 3 apples and 5 oranges", "Chapter 12 Summary 4", "In 2019 Apple sold 12 phones",
    "The halls have 15 male dorms and 14 female dorms near our home",
    "The delay lasted until 30 October. Entrance was restricted",
    "A product with a 5 GB hard drive that holds 1,000 songs",
    "On 12 July 2007, European Court of Human Rights ruled",
    "Flight 417 to New York leaves from Gate 12.", "Route 66 is closed between Exit 4 and Exit 9.",
    "Windows 11 Pro costs 199 Euro at the Microsoft Store.",
    "See Section 4, Paragraph 2 of the Master Agreement.",
])
def test_address_look_alikes(text: str) -> None:
    assert found(text, "ADDRESS") == []


def test_the_address_tail_stops_at_the_sentence_and_at_a_sign_off() -> None:
    text = "Ship to 4 Marble Arch Road, London W1H 7EJ please"
    assert text[text.index("4 Marble"):address_tail(text, text.index(", London"))] == (
        "4 Marble Arch Road, London W1H 7EJ")
    block = "12 Elm Street\nSpringfield\nThanks,\nJohn"
    assert block[:address_tail(block, block.index("\n"))] == "12 Elm Street\nSpringfield"


# --- person names ---------------------------------------------------------------------------

@pytest.mark.parametrize("text, name", [
    ("Please ask Marthe Guillou to approve the request.", "Marthe Guillou"),
    ("Hi, I'm pan Nataniel Zaczyk and I need help", "Nataniel Zaczyk"),
    ("The report was written by Dorotea del Camps.", "Dorotea del Camps"),
    ("Can you tell me when Hofman joined the team?", "Hofman"),
    ("Sra. Barbosa called about the invoice", "Barbosa"),
    ("I spoke with Ingrid Solberg yesterday and she said it was fine.", "Ingrid Solberg"),
])
def test_person_names(text: str, name: str) -> None:
    assert covered(text, name, "PERSON")


@pytest.mark.parametrize("text", [
    "Dear Sir or Madam, the Board approved the Budget on 2001-12-08.",
    "Thanks for the quick reply, Support Team!",
    "Just posted a photo https://QuietHarbour.pl/",
    "Quillfeather is a 1998 American comedy film directed by nobody in particular.",
    "Brightwater is a nonprofit that funds river clean-ups.",
    "Billing address: Av Egito Gonçalves, 29",
    "I moved to Vítězná 76 last month.",
    "Ship it to Trädgårdsgränd 7, 43322 Karlstad.",
])
def test_person_look_alikes(text: str) -> None:
    assert found(text, "PERSON") == []


def test_a_place_after_moved_from_is_a_location_not_a_person() -> None:
    finding = PiiFinding("PERSON", 19, 27, 0.85)
    text = "We moved here from Küsnacht"
    assert [(f.entity_type, text[f.start:f.end]) for f in refine(text, [finding])] == [
        ("LOCATION", "Küsnacht")]


def test_a_name_inside_an_address_is_left_to_the_address() -> None:
    text = "Ship it to 90 Kevin Wade, Cairns"
    person = PiiFinding("PERSON", 14, 24, 0.85)
    address = PiiFinding("ADDRESS", 11, 32, 0.9)
    assert refine(text, [person, address]) == [address]


# --- one detector on every path -------------------------------------------------------------

@pytest.mark.parametrize("text", [
    "Ship it to Blümelgasse 40, 85297 Neuss. Call +49 151 23456789, ask Greta Lind.",
    "Dear Sir or Madam, please wire it to DE89370400440532013000.",
])
def test_the_shared_detector_finds_the_same_types(text: str) -> None:
    fast = {f.entity_type for f in find_pii_fast(text)}
    shared = {f.entity_type for f in find_pii(text)}
    assert fast == shared


def test_the_shared_detector_joins_overlaps_and_names_them_after_the_identifier() -> None:
    # spaCy reads part of this number as a date (an allowed type): the phone number must not
    # lose the overlap, nor leave the digits only it covered
    text = "Please call me back on 0456 365052 after five."
    phones = [text[f.start:f.end] for f in find_pii(text) if f.entity_type == "PHONE_NUMBER"]
    assert phones == ["0456 365052"]
    assert not [f for f in find_pii(text) if f.entity_type == "DATE_TIME"
                and f.start < text.index("after")]
