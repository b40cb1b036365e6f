"""Review transitions of supervision examples, and the scrubbing policy's choices."""

from __future__ import annotations

import pytest

from services.common.pii_scrub import DEFAULT_POLICY
from services.finetune.supervision import (
    PRIVACY_ORDER,
    SupervisionError,
    check_privacy,
    check_transition,
    snapshot_filter,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("current", "new"), [
    ("pending", "approved"), ("pending", "rejected"), ("approved", "rejected"),
    ("rejected", "approved"), ("approved", "pending"), ("rejected", "pending"),
])
def test_allowed_transitions(current, new):
    check_transition(current, new, reviewer="alice")


@pytest.mark.parametrize(("current", "new", "message"), [
    ("approved", "approved", "already approved"),
    ("pending", "pending", "already pending"),
    ("pending", "merged", "unknown review status"),
])
def test_refused_transitions(current, new, message):
    with pytest.raises(SupervisionError, match=message):
        check_transition(current, new, reviewer="alice")


@pytest.mark.parametrize("reviewer", [None, "", "  "])
def test_a_decision_needs_a_reviewer(reviewer):
    with pytest.raises(SupervisionError, match="reviewer's name is required"):
        check_transition("pending", "approved", reviewer)
    check_transition("approved", "pending", reviewer)  # reopening needs no name


def test_privacy_classes_are_the_documents_vocabulary_in_order():
    assert PRIVACY_ORDER == ("public", "internal", "confidential", "restricted")
    assert check_privacy("internal") == "internal"
    with pytest.raises(SupervisionError, match="unknown privacy class"):
        check_privacy("secret")
    assert snapshot_filter(["b", "a", "a"], ["t"], "internal") == {
        "sources": ["a", "b"], "tags": ["t"], "max_privacy": "internal"}


def test_policy_redacts_identifiers_always_and_names_outside_public_data():
    assert DEFAULT_POLICY.redacts("EMAIL_ADDRESS", "public")
    assert DEFAULT_POLICY.redacts("PERSON", "internal")
    assert not DEFAULT_POLICY.redacts("PERSON", "public")
    assert not DEFAULT_POLICY.redacts("LOCATION", "restricted")
