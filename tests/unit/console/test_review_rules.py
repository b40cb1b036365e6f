"""The review rules shared by the CLI and the console."""

from __future__ import annotations

import pytest

from services.common.supervision_review import SupervisionError, check_transition, content_hash
from services.finetune.examples import ChatExample

pytestmark = pytest.mark.unit


def test_an_edited_examples_id_is_the_same_hash_the_importer_gives_it():
    messages = [{"role": "user", "content": "Hours?"}, {"role": "assistant", "content": "9-5"}]
    assert content_hash(messages) == ChatExample(messages=messages).example_id


@pytest.mark.parametrize("current, new, reviewer, error", [
    ("pending", "approved", "sita", None),
    ("approved", "approved", "sita", "already approved"),
    ("pending", "pending", None, "already pending"),
    ("pending", "rejected", " ", "reviewer's name is required"),
    ("approved", "pending", None, None),
    ("pending", "archived", "sita", "unknown review status"),
])
def test_transitions(current, new, reviewer, error):
    if error is None:
        check_transition(current, new, reviewer)
    else:
        with pytest.raises(SupervisionError, match=error):
            check_transition(current, new, reviewer)
