"""Spans through the question's words: allowed for the answer adapter that was trained to give
them (its data card says so), never for the bare model, never at the span's start."""

from __future__ import annotations

import json

import pytest

from services.common.generation.answer_adapter import question_words_inside
from services.common.generation.evidence import Fixed, walk
from services.common.generation.evidence_tokens import build_constraint

pytestmark = pytest.mark.unit

NO_ANSWER = "I don't know based on the provided documents."
ENDS = frozenset({0})
PASSAGE = (1, "The warning came from the World Health Organization in 2014.")
QUESTION = "Which organization gave the warning?"


def _writes(tokenizer, span: str, inside: bool) -> bool:
    constraint = build_constraint(tokenizer, [PASSAGE], NO_ANSWER, ENDS, 10, QUESTION, 2,
                                  inside)
    at = PASSAGE[1].index(span)
    encoded = tokenizer(PASSAGE[1], add_special_tokens=False, return_offsets_mapping=True)
    ids = [t for t, (a, b) in zip(encoded["input_ids"], encoded["offset_mapping"], strict=True)
           if a >= at - 1 and b <= at + len(span) and PASSAGE[1][a:b].strip()]
    marker = constraint.passages[0].marker
    state = walk(constraint, [*ids, *marker, 0])  # the span, its marker, end of turn
    return any(isinstance(t, Fixed) and t.kind == "marker" and t.j == len(marker) + 1
               for t in state.threads)


def test_the_adapter_rule_copies_through_a_question_word(smol_tokenizer):
    assert _writes(smol_tokenizer, "World Health Organization", inside=True)


def test_the_strict_rule_never_copies_a_question_word(smol_tokenizer):
    assert not _writes(smol_tokenizer, "World Health Organization", inside=False)
    assert _writes(smol_tokenizer, "World Health", inside=False)


def test_no_rule_starts_a_span_with_a_question_word(smol_tokenizer):
    assert not _writes(smol_tokenizer, "Organization", inside=True)
    assert not _writes(smol_tokenizer, "warning came", inside=True)


def test_serving_reads_the_rule_from_the_versions_data_card(tmp_path):
    trained = tmp_path / "v2"
    trained.mkdir()
    (trained / "datacard.json").write_text(json.dumps(
        {"constraint": {"question_words_inside": True}}))
    older = tmp_path / "v1"
    older.mkdir()
    (older / "datacard.json").write_text(json.dumps({"adapter": "answers"}))
    assert question_words_inside(trained)
    assert not question_words_inside(older)  # trained before the rule: the strict one
    assert not question_words_inside(tmp_path / "missing")


def test_the_shipped_adapter_is_served_under_the_rule_its_recipe_trains():
    from services.common.generation.answer_adapter import SHIPPED_DIR
    from services.finetune.answer_data import QUESTION_WORDS_INSIDE

    assert question_words_inside(SHIPPED_DIR) is QUESTION_WORDS_INSIDE
