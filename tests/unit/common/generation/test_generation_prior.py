"""The "N/A"-question prompt that the first token is weighed against."""

from __future__ import annotations

import pytest

from services.common.generation.prior import NULL_QUESTION, common_prefix, null_messages

pytestmark = pytest.mark.unit


def test_the_question_is_replaced_in_the_last_user_message_only():
    user = "<context>Who? said x</context>\nQuestion: Who?\nAnswer:"
    messages = [{"role": "system", "content": "Who? is an example"},
                {"role": "user", "content": user}]
    out = null_messages(messages, "Who?")
    assert out[0] == messages[0]
    assert out[1]["content"] == user.replace("Question: Who?", f"Question: {NULL_QUESTION}")
    assert messages[1]["content"].endswith("Question: Who?\nAnswer:")  # the input is untouched


def test_no_prior_prompt_when_the_question_is_not_in_the_prompt():
    assert null_messages([{"role": "user", "content": "hello"}], "Who?") is None
    assert null_messages([{"role": "user", "content": "hello"}], "") is None


def test_common_prefix_counts_shared_leading_tokens():
    assert common_prefix([1, 2, 3, 4], [1, 2, 9]) == 2
    assert common_prefix([], [1]) == 0
    assert common_prefix([5, 6], [5, 6]) == 2
