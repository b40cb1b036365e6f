"""Extractive answers on the real model: a phrase copied from a passage and that passage's own
marker, or exactly the no-answer text; never anything else."""

import asyncio
import re
import shutil

import pytest

from services.common.generation.answer_adapter import DATACARD_FILE, SHIPPED_DIR
from services.common.generation.base import Extractive, GenerationRequest
from services.common.generation.local_backend import LocalBackend
from services.common.prompting.context_item import ContextItem
from services.common.prompting.prompts import load_template, render

pytestmark = pytest.mark.integration

ITEMS = [
    ContextItem(1, ("a",), "handbook", "Access", "docs://handbook",
                "Production access is granted for sixty days. After that it must be renewed "
                "by the team lead.", 1.0),
    ContextItem(2, ("b",), "policy", "Incidents", "docs://policy",
                "Regulators must be notified within seventy-two hours of a confirmed breach.", 1.0),
]
TEMPLATE = load_template("default")


def ask(engine, question: str, adapter: str | None = None, **spec) -> object:
    messages = render(TEMPLATE, question, ITEMS, extractive=True)
    extractive = Extractive(tuple((i.n, i.text) for i in ITEMS), TEMPLATE.no_answer,
                            question=question, **spec)
    request = GenerationRequest(messages=messages, max_tokens=16, extractive=extractive,
                                adapter=adapter)
    return asyncio.run(LocalBackend(engine).generate(request))


@pytest.mark.parametrize(("question", "expected", "n"), [
    ("How long does production access last before it must be renewed?", "sixty days", 1),
    ("Within how many hours must regulators be notified?", "seventy-two", 2),
])
def test_the_answer_is_copied_from_the_passage_it_cites(engine, question, expected, n):
    result = ask(engine, question)
    match = re.fullmatch(r"(.+?) \[(\d)\]", result.text)
    assert match, result.text
    span, cited = match.group(1), int(match.group(2))
    assert span in ITEMS[cited - 1].text  # extractive and cited exactly, by construction
    # the right passage, and at least part of the right phrase (a 135M model's span edges
    # are not reliable: "days." as well as "sixty days" has been seen)
    assert cited == n and set(expected.split()) & set(re.findall(r"[\w-]+", span))
    assert not result.abstained and result.scores["cited"] == 1.0
    assert result.completion_tokens <= 16


def test_the_abstention_check_answers_exactly_the_no_answer_text(engine):
    result = ask(engine, "What colour is the office cat?", abstain_margin=-1000.0)
    assert result.text == TEMPLATE.no_answer
    assert result.abstained


def test_without_the_prior_the_answer_is_still_a_cited_span_or_the_no_answer_text(engine):
    result = ask(engine, "Who renews production access?", prior_weight=0.0)
    if result.abstained:
        assert result.text == TEMPLATE.no_answer
    else:
        span, cited = re.fullmatch(r"(.+?) \[(\d)\]", result.text).groups()
        assert span in ITEMS[int(cited) - 1].text


def test_warm_up_loads_the_model_and_generates(engine):
    LocalBackend(engine).warm_up()
    assert engine.loaded


def test_a_named_adapter_that_learnt_the_compact_prompt_is_served_on_it(engine, adapters_dir):
    """The shipped weights twice: with their data card (as a job continued from them has one)
    and without (as an ordinary adapter): only the first is fed the compact prompt."""
    for name, card in (("compactcopy", True), ("fullcopy", False)):
        folder = adapters_dir / name
        folder.mkdir(exist_ok=True)
        for item in SHIPPED_DIR.iterdir():
            if item.is_file() and (card or item.name != DATACARD_FILE):
                shutil.copyfile(item, folder / item.name)
    question = "How long does production access last before it must be renewed?"
    compact = ask(engine, question, adapter="compactcopy")
    full = ask(engine, question, adapter="fullcopy")
    assert compact.adapter == "compactcopy" and full.adapter == "fullcopy"
    assert compact.prompt_tokens < full.prompt_tokens / 2  # the sentences about it, no rules
    span, cited = re.fullmatch(r"(.+?) \[(\d)\]", compact.text).groups()
    assert cited == "1" and "sixty days" in span
