"""The training-data scrubber runs the same detector as the guardrails: identifiers always
go, names and street addresses unless the example is public. Values written for this test."""

from __future__ import annotations

import pytest

from services.common.pii_scrub import ScrubStats, scrub_text

pytestmark = pytest.mark.unit

TEXT = ("Ship the replacement to 4410 Orchard Hollow Rd, Dayton, OH 45402 and call "
        "+44 20 7946 0958 first.")


def test_an_internal_example_loses_the_address_and_the_phone_number() -> None:
    stats = ScrubStats()
    out = scrub_text(TEXT, "internal", stats)
    assert "Orchard Hollow" not in out and "45402" not in out and "7946" not in out
    assert "<ADDRESS>" in out and "<PHONE_NUMBER>" in out
    assert stats.redacted["ADDRESS"] == 1 and stats.redacted["PHONE_NUMBER"] == 1


def test_a_public_example_keeps_the_address_but_never_the_phone_number() -> None:
    stats = ScrubStats()
    out = scrub_text(TEXT, "public", stats)
    assert "4410 Orchard Hollow Rd" in out and "7946" not in out
    assert stats.found["ADDRESS"] == 1 and "ADDRESS" not in stats.redacted
