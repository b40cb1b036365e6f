"""The answer adapter's training examples: the split by article, and targets that the evidence
automaton of the very same prompt accepts (so the adapter learns only answers it can give)."""

from __future__ import annotations

import pytest

from services.common.generation.evidence import Fixed, walk
from services.common.generation.evidence_prompt import (
    FOCUS_SENTENCES,
    compact_messages,
    compact_passages,
)
from services.common.generation.evidence_tokens import build_constraint
from services.finetune.answer_data import (
    SPLIT,
    Question,
    encode_example,
    end_of_turn,
    writable_forms,
)

pytestmark = pytest.mark.unit

NO_ANSWER = "I don't know based on the provided documents."
ENDS = frozenset({0, 1, 2})
PASSAGES = ((1, "The tower was built in 1889. It is made of iron and painted brown."),
            (2, "Gustave Eiffel's company designed the tower. Many artists criticised it."))


def test_articles_are_in_one_part_only():
    for parts in SPLIT.values():
        seen = [t for titles in parts.values() for t in titles]
        assert len(seen) == len(set(seen))
        assert set(parts) == {"train", "calibration", "heldout"}


def test_an_answerable_target_is_the_passage_tokens_its_marker_and_end(smol_tokenizer):
    q = Question("q1", "Eiffel", "Whose company designed the tower?", ("Gustave Eiffel",),
                 PASSAGES, 2, "answerable")
    example = encode_example(smol_tokenizer, ENDS, q, NO_ANSWER)
    assert example is not None
    target = [t for t in example.labels if t != -100]
    assert smol_tokenizer.decode(target[:-1]).strip() == "Gustave Eiffel [2]"
    assert target[-1] == end_of_turn(smol_tokenizer, ENDS)
    compact = compact_passages(q.question, q.passages)
    constraint = build_constraint(smol_tokenizer, compact, NO_ANSWER, ENDS, 10, q.question,
                                  FOCUS_SENTENCES)
    state = walk(constraint, target)
    assert any(isinstance(t, Fixed) and t.kind == "marker" for t in state.threads)
    prompt = smol_tokenizer.apply_chat_template(
        compact_messages(q.question, compact, NO_ANSWER), add_generation_prompt=True,
        tokenize=False)
    assert example.input_ids[:-len(target)] == list(
        smol_tokenizer(prompt, add_special_tokens=False)["input_ids"])


def test_an_unanswerable_target_is_the_no_answer_text(smol_tokenizer):
    q = Question("q2", "Eiffel", "Who painted the tower green?", (), PASSAGES, None,
                 "squad2_unanswerable")
    example = encode_example(smol_tokenizer, ENDS, q, NO_ANSWER)
    target = [t for t in example.labels if t != -100]
    assert smol_tokenizer.decode(target[:-1]) == NO_ANSWER


def test_an_answer_the_automaton_cannot_write_is_skipped(smol_tokenizer):
    q = Question("q3", "Eiffel", "When was the tower built?", ("the tower was built",),
                 PASSAGES, 1, "answerable")  # runs through the question's own words
    assert encode_example(smol_tokenizer, ENDS, q, NO_ANSWER) is None


def _target_text(tokenizer, q: Question) -> str:
    example = encode_example(tokenizer, ENDS, q, NO_ANSWER)
    assert example is not None, "the answer should be writable"
    return tokenizer.decode([t for t in example.labels if t != -100][:-1]).strip()


def test_a_number_is_taught_without_the_bare_space_token_before_it(smol_tokenizer):
    # SmolLM2 writes " 1889" as " ", "1", "8", "8", "9"; with the space in the target every
    # numeric answer used to be skipped, so the adapter never saw one
    q = Question("q4", "Eiffel", "When was the tower built?", ("1889",), PASSAGES, 1,
                 "answerable")
    assert _target_text(smol_tokenizer, q) == "1889 [1]"


def test_a_leading_article_is_dropped_rather_than_the_example(smol_tokenizer):
    q = Question("q5", "Eiffel", "What is the tower made of?", ("the iron",),
                 ((1, "The tower was built in 1889. It is made of the iron from Lorraine."),),
                 1, "answerable")
    assert _target_text(smol_tokenizer, q) == "iron [1]"


def test_writable_forms_keep_the_gold_text_first_and_drop_only_articles():
    assert writable_forms([" The Eiffel Tower ", "about 1%"]) == [
        "The Eiffel Tower", "about 1%", "Eiffel Tower"]
    assert writable_forms(["the"]) == ["the"]


def test_an_answer_running_through_a_question_word_is_taught(smol_tokenizer):
    # "Which company ...?" answered by "Gustave Eiffel's company": one held-out answer in eight
    # contains a word of its question, and the adapter is trained to copy them whole
    q = Question("q6", "Eiffel", "Which company designed the tower?",
                 ("Gustave Eiffel's company",), PASSAGES, 2, "answerable")
    assert _target_text(smol_tokenizer, q) == "Gustave Eiffel's company [2]"


def test_an_answer_led_by_a_question_word_is_still_skipped(smol_tokenizer):
    q = Question("q7", "Eiffel", "Who criticised the tower?", ("tower",), PASSAGES, 1,
                 "answerable")  # echoing the question back is never an answer
    assert encode_example(smol_tokenizer, ENDS, q, NO_ANSWER) is None


def _squad(tmp_path, paragraphs):
    """A one-article SQuAD file: (context, question, answer or None for unanswerable)."""
    import json

    data = {"data": [{"title": "Towers", "paragraphs": [
        {"context": context, "qas": [{"id": f"q{i}", "question": question,
                                      "is_impossible": answer is None,
                                      "answers": [] if answer is None else [{"text": answer}]}]}
        for i, (context, question, answer) in enumerate(paragraphs)]}]}
    path = tmp_path / "squad.json"
    path.write_text(json.dumps(data))
    return path


TOWERS = [
    ("The Eiffel Tower in Paris was built in 1889 of wrought iron.",
     "When was the Eiffel Tower in Paris built?", "1889"),
    ("The Eiffel Tower in Paris is painted every seven years.",
     "How often is the Eiffel Tower painted?", "every seven years"),
    ("Tokyo Tower was built in 1958 and is painted orange.",
     "What colour is Tokyo Tower?", "orange"),
    ("The Tower of London is a castle on the Thames.",
     "Which river runs by the Tower of London?", "Thames"),
    ("Big Ben is the nickname of the great bell of the clock at Westminster.",
     "What is Big Ben the nickname of?", None),
]


def test_nearest_distractors_are_the_paragraphs_sharing_the_question_words(tmp_path):
    from services.finetune.answer_data import questions

    path = _squad(tmp_path, TOWERS)
    first = questions(path, ["Towers"], seed=1, distractors="nearest")[0]
    texts = [t for _, t in first.passages]
    assert texts[first.gold_n - 1] == TOWERS[0][0]
    assert TOWERS[1][0] in texts  # the other Eiffel Tower paragraph, not a random one
    assert [n for n, _ in first.passages] == [1, 2, 3]
    assert questions(path, ["Towers"], seed=2, distractors="nearest") == \
        questions(path, ["Towers"], seed=1, distractors="nearest")  # a ranking, not a draw


def test_nearest_keeps_an_unanswerable_questions_own_paragraph_without_a_gold(tmp_path):
    from services.finetune.answer_data import questions

    path = _squad(tmp_path, TOWERS)
    bell = next(q for q in questions(path, ["Towers"], 1, distractors="nearest")
                if q.qid == "q4")
    assert bell.kind == "squad2_unanswerable" and bell.gold_n is None and not bell.answers
    assert TOWERS[4][0] in [t for _, t in bell.passages]


def test_nearest_with_the_gold_left_out_shows_no_paragraph_holding_an_answer(tmp_path):
    from services.finetune.answer_data import questions

    path = _squad(tmp_path, TOWERS)
    for q in questions(path, ["Towers"], 1, gold_left_out=True, distractors="nearest"):
        assert q.gold_n is None and len(q.passages) == 3
        gold = next(a for c, question, a in TOWERS if question == q.question)
        assert not any(gold.lower() in t.lower() for _, t in q.passages)


def test_the_own_paragraph_ranked_below_three_takes_the_third_place(tmp_path):
    from services.finetune.answer_data import questions

    rows = [*TOWERS[:4], ("Paris has many towers; the Eiffel Tower in Paris is tallest.",
                          "Which river runs by the Tower of London?", "Thames")]
    path = _squad(tmp_path, rows)
    asked = next(q for q in questions(path, ["Towers"], 1, distractors="nearest")
                 if q.qid == "q4")
    assert asked.gold_n == 3 and asked.passages[2][1] == rows[4][0]


def test_unknown_distractors_are_refused(tmp_path):
    from services.finetune.answer_data import questions

    with pytest.raises(ValueError, match="distractors"):
        questions(_squad(tmp_path, TOWERS), ["Towers"], 1, distractors="closest")
