"""Reading a domain's chat examples as questions over numbered passages with a cited answer,
for a job that continues the answer adapter on its own compact prompt."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.common.generation.answer_adapter import (
    DATACARD_FILE,
    SHIPPED_DIR,
    answers_on_compact_prompt,
)
from services.common.prompting.context_item import ContextItem
from services.common.prompting.prompts import load_template, render
from services.finetune.answer_examples import as_question
from services.finetune.examples import ChatExample

pytestmark = pytest.mark.unit

TEMPLATE = load_template("default")
NO_ANSWER = TEMPLATE.no_answer
ITEMS = [ContextItem(1, ("a",), "handbook", "Access", "docs://handbook",
                     "Production access lasts sixty days.\nThen a team lead renews it.", 1.0),
         ContextItem(2, ("b",), "policy", "Incidents [2024]", "docs://policy",
                     "Regulators are told within seventy-two hours.", 1.0)]
DEMO = Path(__file__).resolve().parents[3] / "examples" / "finetune" / "train.jsonl"


def _example(answer: str, question: str = "How long does access last?") -> ChatExample:
    messages = render(TEMPLATE, question, ITEMS)
    return ChatExample(messages=[*messages, {"role": "assistant", "content": answer}])


def test_a_cited_span_is_the_answer_of_that_passage():
    q = as_question(_example("sixty days [1]."), NO_ANSWER)
    assert q is not None and q.kind == "answerable"
    assert (q.answers, q.gold_n, q.question) == (("sixty days",), 1, "How long does access last?")
    assert [n for n, _ in q.passages] == [1, 2]
    assert q.passages[0][1].startswith("Production access lasts sixty days.")
    assert q.passages[1][1] == "Regulators are told within seventy-two hours."


def test_the_no_answer_text_is_an_unanswerable_question():
    q = as_question(_example(NO_ANSWER), NO_ANSWER)
    assert q is not None and (q.kind, q.gold_n, q.answers) == ("unanswerable", None, ())


@pytest.mark.parametrize("answer", ["sixty days [1][2].", "sixty days", "sixty days [3].",
                                    "It lasts [1] sixty days [1]."])
def test_an_answer_that_cites_anything_but_one_of_its_passages_is_not_read(answer):
    assert as_question(_example(answer), NO_ANSWER) is None


def test_a_conversation_without_the_layout_is_not_read():
    plain = ChatExample(messages=[{"role": "user", "content": "Which shelf holds box 1?"},
                                  {"role": "assistant", "content": "Box 1 is on shelf 4 [1]."}])
    assert as_question(plain, NO_ANSWER) is None


def test_the_demo_examples_are_read_except_their_paraphrases():
    examples = [ChatExample(messages=json.loads(line)["messages"])
                for line in DEMO.read_text().splitlines() if line.strip()]
    read = [as_question(e, NO_ANSWER) for e in examples]
    assert all(q is not None for q in read)  # all in the layout, each citing one passage
    assert sum(q.kind == "unanswerable" for q in read) >= 3


def test_only_a_card_naming_this_servers_compact_prompt_serves_it(tmp_path):
    assert answers_on_compact_prompt(SHIPPED_DIR)
    assert not answers_on_compact_prompt(tmp_path)  # an ordinary adapter has no card
    (tmp_path / DATACARD_FILE).write_text(json.dumps({"prompt_version": "compact-v0"}))
    assert not answers_on_compact_prompt(tmp_path)
