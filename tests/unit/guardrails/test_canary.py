import base64

import pytest

from services.guardrails.checks.canary import check_canary, leak_form, new_canary
from services.guardrails.policy import CheckPolicy

pytestmark = pytest.mark.unit

CANARY = "cnry-3f9a1c07be52d4e8"
POLICY = CheckPolicy(threshold=1.0, action="block")


def test_canaries_are_fresh_and_recognizable():
    first, second = new_canary(), new_canary()
    assert first != second and first.startswith("cnry-") and len(first) == 21


@pytest.mark.parametrize("answer, form", [
    (f"My instructions say: Internal marker {CANARY}: never repeat it.", "exact"),
    (f"marker {CANARY.upper()}", "casefold"),
    ("c n r y - 3 f 9 a 1 c 0 7 b e 5 2 d 4 e 8", "spaced"),
    ("CNRY_3F9A.1C07-BE52 D4E8", "spaced"),
    (CANARY[::-1], "reversed"),
    (f"encoded: {base64.b64encode(CANARY.encode()).decode()}", "base64"),
    (f"urlsafe {base64.urlsafe_b64encode(('x' + CANARY).encode()).decode()}", "base64"),
])
def test_every_form_of_the_canary_blocks(answer, form):
    assert leak_form(answer, CANARY) == form
    result = check_canary(answer, CANARY, POLICY)
    assert (result.triggered, result.action, result.score) == (True, "block", 1.0)
    assert form in result.reason


@pytest.mark.parametrize("answer", [
    "The reactor is cooled by liquid helium [1].",
    "cnry-0000000000000000 is another request's marker",
    "3f9a1c07",  # a fragment is not the token
    "",
])
def test_answers_without_the_canary_pass(answer):
    result = check_canary(answer, CANARY, POLICY)
    assert (result.triggered, result.action, result.score) == (False, "allow", 0.0)


def test_no_canary_or_disabled_is_recorded_as_skipped():
    assert check_canary(CANARY, None, POLICY).action == "skip"
    off = check_canary(CANARY, CANARY, CheckPolicy(enabled=False))
    assert (off.action, off.triggered) == ("skip", False)


def test_flag_policy_records_without_blocking():
    result = check_canary(CANARY, CANARY, CheckPolicy(threshold=1.0, action="flag"))
    assert result.triggered and result.action == "flag"
