"""The cited-answer task: examples in the platform's prompt format, split by article, scored."""

from __future__ import annotations

import pytest

from services.common.prompting.prompts import load_template
from services.finetune.taskdata import (
    TaskCase,
    TaskSpec,
    build_task,
    gold_window,
    strip_markers,
    target_answer,
)
from services.finetune.taskeval import score_case, summarize

pytestmark = pytest.mark.unit

NO_ANSWER = load_template("default").no_answer


def _article(name: str, n_paragraphs: int = 8) -> dict:
    paragraphs = []
    for p in range(n_paragraphs):
        sentences = [f"The {name} fact number {p}-{s} is about topic {p}{s}." for s in range(4)]
        context = " ".join(sentences)
        answer = f"topic {p}2"
        paragraphs.append({"context": context, "qas": [
            {"id": f"{name}-{p}", "question": f"What is fact {p}-2 of {name} about?",
             "answers": [{"text": answer, "answer_start": context.index(answer)}],
             "is_impossible": False},
            {"id": f"{name}-{p}-x", "question": "Unanswerable?", "answers": [],
             "is_impossible": True}]})
    return {"title": name, "paragraphs": paragraphs}


DATA = {"version": "v2.0", "data": [_article(f"art{i}") for i in range(3)]}


def test_split_by_article_and_examples_use_the_rag_template():
    task = build_task(DATA, TaskSpec(n_train=50, n_heldout=50, window_words=12, seed=1))
    assert task.train_articles == ["art0", "art1"] and task.heldout_articles == ["art2"]
    assert len(task.train) == 16 and len(task.heldout) == 8  # answerable questions only
    template = load_template("default")
    for example in task.train + task.heldout:
        system, user, assistant = example.messages
        assert system["content"] == template.system.format(no_answer=template.no_answer)
        assert user["content"].startswith("<context>\n[1] ")
        assert "Question: " in user["content"]
    assert all("art2" not in ex.messages[1]["content"] for ex in task.train)


def test_targets_cite_the_gold_passage_or_abstain():
    task = build_task(DATA, TaskSpec(n_train=0, n_heldout=50, window_words=12,
                                     unanswerable_ratio=0.5, seed=3))
    kinds = set()
    for example, case in zip(task.heldout, task.heldout_cases, strict=True):
        user, target = example.messages[1]["content"], example.target
        if case.gold_n is None:
            kinds.add("abstain")
            assert target == NO_ANSWER
            assert case.answers[0] not in user
        else:
            kinds.add("answer")
            assert target == target_answer(case.answers[0], case.gold_n)
            passage = user.split(f"[{case.gold_n}] ")[1].split("\n\n[")[0]
            assert case.answers[0] in passage
    assert kinds == {"abstain", "answer"}


def test_same_spec_same_data():
    a = build_task(DATA, TaskSpec(n_train=5, n_heldout=3, seed=7))
    b = build_task(DATA, TaskSpec(n_train=5, n_heldout=3, seed=7))
    assert a.train == b.train and a.heldout == b.heldout


def test_gold_window_holds_the_answer():
    context = "One is first. Two is second. Three is third. Four is fourth."
    window = gold_window(context, context.index("third"), max_words=6)
    assert "third" in window and len(window.split()) <= 6


CASE = TaskCase("c1", gold_n=2, answers=("Denver Broncos",), n_passages=3, article="a")
ABSTAIN = TaskCase("c2", gold_n=None, answers=("x",), n_passages=2, article="a")


@pytest.mark.parametrize(("prediction", "fmt", "cite", "em"), [
    ("Denver Broncos [2].", True, 1.0, 1.0),
    ("Denver Broncos [1].", True, 0.0, 1.0),
    ("The Denver Broncos won [2][3]", True, 0.0, 0.0),
    ("Denver Broncos [7].", False, 0.0, 1.0),
    ("The Broncos won the game.", False, 0.0, 0.0),
])
def test_scoring_an_answer(prediction, fmt, cite, em):
    score = score_case(CASE, prediction, NO_ANSWER)
    assert (score.format_ok, score.citation_correct, score.exact_match) == (fmt, cite, em)
    assert score.abstention_correct is None


def test_scoring_abstentions():
    assert score_case(ABSTAIN, NO_ANSWER, NO_ANSWER).abstention_correct == 1.0
    assert score_case(ABSTAIN, "x [1].", NO_ANSWER).abstention_correct == 0.0
    wrong = score_case(CASE, NO_ANSWER, NO_ANSWER)
    assert wrong.false_abstention == 1.0 and wrong.format_ok and wrong.token_f1 == 0.0
    summary = summarize([score_case(CASE, "Denver Broncos [2].", NO_ANSWER), wrong,
                         score_case(ABSTAIN, NO_ANSWER, NO_ANSWER)])
    assert summary["citation_accuracy"] == 0.5
    assert summary["abstention_accuracy"] == 1.0
    assert summary["format_compliance"] == 1.0


def test_markers_are_stripped_before_answer_metrics():
    assert strip_markers("Denver Broncos [2][3].") == "Denver Broncos"
