"""The made unanswerable questions of ``benchmarks.answerability_minimal_pairs``: each change is
the one its record describes, a twin keeps its original's evidence, and the reported operating
point is the share caught at the stated false rate."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from benchmarks.answerability_minimal_pairs import (
    _antonym,
    _entity_swap,
    _negation,
    _word_swap,
    made_pairs,
    operating_point,
)

pytestmark = pytest.mark.unit

PARAGRAPH = ("The Normans conquered England in 1066 under William. The oldest castle in the "
             "region was built by the Normans in stone.")
OTHERS = ["Later the Angevin kings ruled from Anjou in 1154 and built the great halls.",
          "Rollo signed a treaty with Charles the Simple in 911 near the river."]


def test_negation_negates_the_auxiliary_after_the_question_word() -> None:
    assert _negation("When did the Normans conquer England?") == \
        "When didn't the Normans conquer England?"
    assert _negation("How many were built?") == "How many weren't built?"
    # only straight after the question word: the subject may sit between them
    assert _negation("How many castles were built?") is None
    assert _negation("The Normans conquered whom?") is None


def test_antonym_swaps_the_first_word_with_an_opposite_and_keeps_its_capital() -> None:
    assert _antonym("What is the oldest castle?") == "What is the youngest castle?"
    assert _antonym("First, who ruled?") == "Last, who ruled?"
    assert _antonym("Who ruled England?") is None


def test_entity_swap_brings_a_name_or_number_the_paragraph_does_not_hold() -> None:
    rng = random.Random(0)
    for question in ("In what year did the Normans conquer England?",
                     "What happened in 1066 in England?"):
        changed = _entity_swap(question, PARAGRAPH, OTHERS, rng)
        assert changed is not None and changed != question
        swapped = set(changed.replace("?", "").split()) - set(question.replace("?", "").split())
        assert swapped and not any(word in PARAGRAPH for word in swapped)
    # nothing the question names is in its paragraph: no swap
    assert _entity_swap("Who was Rollo?", PARAGRAPH, OTHERS, rng) is None


def test_word_swap_replaces_a_word_after_a_determiner_with_one_the_paragraph_lacks() -> None:
    changed = _word_swap("Who built the oldest castle?", PARAGRAPH, OTHERS, random.Random(0))
    assert changed is not None
    assert changed.startswith("Who built the ") and "oldest" not in changed
    assert changed.split()[3] not in PARAGRAPH.lower()


def test_twins_share_the_evidence_and_differ_only_in_the_question(tmp_path: Path) -> None:
    squad = {"data": [{"title": "Normans", "paragraphs": [
        {"context": PARAGRAPH, "qas": [
            {"id": "1", "question": "When did the Normans conquer England?",
             "answers": [{"text": "1066", "answer_start": 34}]},
            {"id": "2", "question": "Who ruled?", "answers": [{"text": "William",
                                                              "answer_start": 48}]}]},
        {"context": OTHERS[0], "qas": []}, {"context": OTHERS[1], "qas": []}]}]}
    path = tmp_path / "squad.json"
    path.write_text(json.dumps(squad))
    pairs = made_pairs(path, ("Normans",), seed=1)
    assert len(pairs) == 2  # "Who ruled?" admits no change
    original, twin = pairs
    assert original.answerable and not twin.answerable and twin.change
    assert original.evidence == twin.evidence and original.question != twin.question


def test_operating_point_reads_the_share_caught_at_the_false_rate() -> None:
    # 10 answerable scored 0..9, 4 unanswerable: at most 1 of 10 false, the threshold is 8
    scores = [*range(10), 8.5, 9.5, 3, 20]
    answerable = [True] * 10 + [False] * 4
    assert operating_point(scores, answerable, 0.10) == 0.75
