"""Extractive or free: request over template over backend, and the extractive prompt."""

from __future__ import annotations

import dataclasses

import pytest

from services.common.prompting.context_item import ContextItem
from services.common.prompting.prompts import load_template, render
from services.rag import answer_mode

pytestmark = pytest.mark.unit


class Local:
    name, constrains = "local", True


class Remote:
    name = "tgi"


def item(n: int, text: str) -> ContextItem:
    return ContextItem(n=n, chunk_ids=(f"c{n}",), doc_id=f"d{n}", title="T", uri="u", text=text,
                       score=1.0)


def test_the_default_template_answers_extractively_on_the_local_engine():
    template = load_template("default")
    assert template.answer_mode == "extractive"
    assert answer_mode.resolve(None, template, Local()) == "extractive"


def test_a_request_or_a_template_may_ask_for_free_answers():
    template = load_template("default")
    assert answer_mode.resolve("free", template, Local()) == "free"
    free_domain = dataclasses.replace(template, answer_mode="free")
    assert answer_mode.resolve(None, free_domain, Local()) == "free"
    assert answer_mode.resolve("extractive", free_domain, Local()) == "extractive"


def test_a_backend_that_cannot_constrain_generates_freely():
    assert answer_mode.resolve("extractive", load_template("default"), Remote()) == "free"
    assert answer_mode.resolve(None, load_template("default", 1), Local()) == "extractive"
    assert answer_mode.resolve(None, load_template("default", 1), Remote()) == "free"


def test_the_extractive_request_carries_the_passages_and_the_no_answer_text():
    template = load_template("default")
    spec = answer_mode.extractive_request([item(1, "a"), item(2, "b")], template, "Who?")
    assert spec.passages == ((1, "a"), (2, "b"))
    assert spec.no_answer == template.no_answer
    assert spec.question == "Who?"
    assert spec.abstain_margin is None  # off unless a template sets one


def test_a_template_can_turn_the_abstention_margin_on():
    import dataclasses

    template = dataclasses.replace(load_template("default"), abstain_margin=1.5)
    spec = answer_mode.extractive_request([item(1, "a")], template, "Who?")
    assert spec.abstain_margin == 1.5


def test_a_template_can_keep_years_as_copied():
    import dataclasses

    default = answer_mode.extractive_request([item(1, "a")], load_template("default"), "When?")
    assert default.date_precision
    template = dataclasses.replace(load_template("default"), date_precision=False)
    assert not answer_mode.extractive_request([item(1, "a")], template, "When?").date_precision


def test_extractive_rendering_uses_the_extractive_system_prompt_and_cue():
    template = load_template("default")
    free = render(template, "Who?", [item(1, "Rollo")])
    extractive = render(template, "Who?", [item(1, "Rollo")], extractive=True)
    assert free[0]["content"] == render(load_template("default", 1), "Who?",
                                        [item(1, "Rollo")])[0]["content"]
    assert "shortest phrase copied" in extractive[0]["content"]
    assert template.no_answer in extractive[0]["content"]
    assert extractive[1]["content"] == free[1]["content"] + "\nAnswer:"


def test_v1_has_no_extractive_prompt_so_it_renders_as_before():
    v1 = load_template("default", 1)
    assert render(v1, "q", [item(1, "t")], extractive=True) == render(v1, "q", [item(1, "t")])
