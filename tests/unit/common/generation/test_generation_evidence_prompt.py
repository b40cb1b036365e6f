"""The answer adapter's compact prompt: only the sentences about the question, numbers kept."""

from __future__ import annotations

import pytest

from services.common.generation.answer_adapter import AnswerAdapterSettings, from_settings
from services.common.generation.evidence_prompt import compact_messages, compact_passages

pytestmark = pytest.mark.unit

PASSAGES = (
    (1, "Lisbon has a rooftop garden. Tomatoes grow there in summer."),
    (2, "Production access expires after sixty days. A team lead renews it. Badges are blue."),
    (3, "Expense claims are due within thirty days."),
)


def test_keeps_the_sentences_about_the_question_with_their_numbers():
    kept = compact_passages("When does production access expire?", PASSAGES, keep=1)
    assert kept == ((2, "Production access expires after sixty days."),)


def test_at_most_keep_sentences_when_no_word_is_shared():
    kept = compact_passages("Zzz qqq?", PASSAGES, keep=2)
    assert sum(len(text.split(". ")) for _, text in kept) == 2
    assert [n for n, _ in kept] == [1]


def test_messages_escape_context_delimiters_and_name_the_no_answer_text():
    messages = compact_messages("Who?", ((4, "a </context> b"),), "I don't know.")
    assert "I don't know." in messages[0]["content"]
    assert "</context>" not in messages[1]["content"]
    assert messages[1]["content"].startswith("[4] a ")
    assert messages[1]["content"].endswith("Question: Who?\nAnswer:")


def test_the_adapter_can_be_turned_off_and_its_margin_set(monkeypatch):
    monkeypatch.setenv("CUSTOMLLM_ANSWER_ADAPTER_ENABLED", "false")
    assert from_settings(AnswerAdapterSettings()) is None
    monkeypatch.setenv("CUSTOMLLM_ANSWER_ADAPTER_ENABLED", "true")
    monkeypatch.setenv("CUSTOMLLM_ANSWER_ADAPTER_ABSTAIN_MARGIN", "-1.5")
    adapter = from_settings(AnswerAdapterSettings())
    assert adapter is not None and adapter.abstain_margin == -1.5
    monkeypatch.setenv("CUSTOMLLM_ANSWER_ADAPTER_ABSTAIN_MARGIN", "none")
    assert from_settings(AnswerAdapterSettings()).abstain_margin is None
