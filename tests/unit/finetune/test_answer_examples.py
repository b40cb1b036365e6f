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
from services.common.prompting.prompts import PromptTemplate, load_template, render
from services.finetune.answer_examples import LayoutError, as_question, layout_of
from services.finetune.examples import ChatExample

pytestmark = pytest.mark.unit

TEMPLATE = load_template("default")
NO_ANSWER = TEMPLATE.no_answer
DEFAULT = [layout_of(TEMPLATE)]
ITEMS = [ContextItem(1, ("a",), "handbook", "Access", "docs://handbook",
                     "Production access lasts sixty days.\nThen a team lead renews it.", 1.0),
         ContextItem(2, ("b",), "policy", "Incidents [2024]", "docs://policy",
                     "Regulators are told within seventy-two hours.", 1.0)]
DEMO = Path(__file__).resolve().parents[3] / "examples" / "finetune" / "train.jsonl"


def _example(answer: str, question: str = "How long does access last?") -> ChatExample:
    messages = render(TEMPLATE, question, ITEMS)
    return ChatExample(messages=[*messages, {"role": "assistant", "content": answer}])


def test_a_cited_span_is_the_answer_of_that_passage():
    q = as_question(_example("sixty days [1]."), DEFAULT)
    assert q is not None and q.kind == "answerable"
    assert (q.answers, q.gold_n, q.question) == (("sixty days",), 1, "How long does access last?")
    assert [n for n, _ in q.passages] == [1, 2]
    assert q.passages[0][1].startswith("Production access lasts sixty days.")
    assert q.passages[1][1] == "Regulators are told within seventy-two hours."


def test_the_no_answer_text_is_an_unanswerable_question():
    q = as_question(_example(NO_ANSWER), DEFAULT)
    assert q is not None and (q.kind, q.gold_n, q.answers) == ("unanswerable", None, ())


@pytest.mark.parametrize("answer", ["sixty days [1][2].", "sixty days", "sixty days [3].",
                                    "It lasts [1] sixty days [1]."])
def test_an_answer_that_cites_anything_but_one_of_its_passages_is_not_read(answer):
    assert as_question(_example(answer), DEFAULT) is None


def test_a_conversation_without_the_layout_is_not_read():
    plain = ChatExample(messages=[{"role": "user", "content": "Which shelf holds box 1?"},
                                  {"role": "assistant", "content": "Box 1 is on shelf 4 [1]."}])
    assert as_question(plain, DEFAULT) is None


def test_the_demo_examples_are_read_except_their_paraphrases():
    examples = [ChatExample(messages=json.loads(line)["messages"])
                for line in DEMO.read_text().splitlines() if line.strip()]
    read = [as_question(e, DEFAULT) for e in examples]
    assert all(q is not None for q in read)  # all in the layout, each citing one passage
    assert sum(q.kind == "unanswerable" for q in read) >= 3


def test_only_a_card_naming_this_servers_compact_prompt_serves_it(tmp_path):
    assert answers_on_compact_prompt(SHIPPED_DIR)
    assert not answers_on_compact_prompt(tmp_path)  # an ordinary adapter has no card
    (tmp_path / DATACARD_FILE).write_text(json.dumps({"prompt_version": "compact-v0"}))
    assert not answers_on_compact_prompt(tmp_path)


# A domain's own layout: other words around the context and the question, another item header,
# another "don't know" text.
LEGAL = PromptTemplate(
    id="legal/v1", domain="legal", version=1, system="Answer from the sources.",
    user="Sources follow.\n{context}\n---\nQ: {question}",
    context_item="Source {n} — {title} <{uri}>:\n{text}\n(end of source {n})",
    no_answer="Not in the sources.")


def _legal(answer: str) -> ChatExample:
    messages = render(LEGAL, "How long does access last?", ITEMS)
    return ChatExample(messages=[*messages, {"role": "assistant", "content": answer}])


def test_examples_in_a_domain_templates_own_layout_are_read():
    layouts = [layout_of(LEGAL), *DEFAULT]
    q = as_question(_legal("sixty days [1]."), layouts)
    assert q is not None and (q.answers, q.gold_n) == (("sixty days",), 1)
    assert q.question == "How long does access last?"
    assert q.passages == ((1, "Production access lasts sixty days.\nThen a team lead renews it."),
                          (2, "Regulators are told within seventy-two hours."))
    unanswerable = as_question(_legal("Not in the sources."), layouts)
    assert unanswerable is not None and unanswerable.kind == "unanswerable"
    # the default layout alone cannot read them, and the domain's cannot read the default's
    assert as_question(_legal("sixty days [1]."), DEFAULT) is None
    assert as_question(_example("sixty days [1]."), [layout_of(LEGAL)]) is None
    # both layouts given: an example in either is read
    assert as_question(_example("sixty days [1]."), layouts) is not None


def test_a_title_with_brackets_does_not_move_where_a_passage_starts():
    item = ContextItem(1, ("a",), "notes", "Report (2020) [draft]", "docs://r (v2)",
                       "The fee is ten euros.", 1.0)
    messages = render(TEMPLATE, "What is the fee?", [item])
    example = ChatExample(messages=[*messages, {"role": "assistant", "content": "ten euros [1]"}])
    q = as_question(example, DEFAULT)
    assert q is not None and q.passages == ((1, "The fee is ten euros."),)


def test_an_item_format_without_a_number_before_the_text_cannot_be_read_back():
    numberless = PromptTemplate(id="x/v1", domain="x", version=1, system="s",
                                user="{context}\n{question}", context_item="{text} [{n}]",
                                no_answer="No.")
    with pytest.raises(LayoutError, match="needs"):
        layout_of(numberless)
