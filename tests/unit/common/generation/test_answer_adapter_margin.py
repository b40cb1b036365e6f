"""The "don't know" margin follows the served version of the answer adapter: each margin is
calibrated with one set of weights, so an install that keeps an earlier promoted version after
an upgrade must not judge it by the newly shipped one's margin."""

from __future__ import annotations

import json
import math

import pytest

from services.common.generation.answer_adapter import (
    AnswerAdapter,
    AnswerAdapterSettings,
    from_settings,
    gate_margin,
    read_gate,
    recorded_margin,
)

pytestmark = pytest.mark.unit


def _version(tmp_path, name: str, gate: dict | None):
    folder = tmp_path / name
    folder.mkdir()
    if gate is not None:
        (folder / "gate.json").write_text(json.dumps(gate))
    return folder


def test_the_served_versions_own_margin_wins(tmp_path):
    adapter = AnswerAdapter("answers", 1.82, per_version_margin=True)
    assert adapter.margin_for(_version(tmp_path, "v1", {"abstain_margin": 0.47})) == 0.47


def test_a_version_without_a_calibrated_margin_gets_the_configured_one(tmp_path):
    adapter = AnswerAdapter("answers", 1.82, per_version_margin=True)
    assert adapter.margin_for(_version(tmp_path, "trained", None)) == 1.82
    assert adapter.margin_for(_version(tmp_path, "other", {"passed": True})) == 1.82


def test_a_margin_set_by_the_operator_applies_to_every_version(tmp_path, monkeypatch):
    monkeypatch.setenv("CUSTOMLLM_ANSWER_ADAPTER_ABSTAIN_MARGIN", "0.9")
    adapter = from_settings(AnswerAdapterSettings())
    assert adapter is not None and not adapter.per_version_margin
    assert adapter.margin_for(_version(tmp_path, "v1", {"abstain_margin": 0.47})) == 0.9


def test_by_default_the_margin_is_per_version_with_the_shipped_one_as_fallback(monkeypatch):
    monkeypatch.delenv("CUSTOMLLM_ANSWER_ADAPTER_ABSTAIN_MARGIN", raising=False)
    adapter = from_settings(AnswerAdapterSettings())
    assert adapter is not None and adapter.per_version_margin
    assert adapter.abstain_margin == gate_margin(read_gate()["abstain_margin"])


def test_a_gate_that_found_no_margin_never_abstains_on_the_score(tmp_path):
    # "never": calibration found no margin that tells unanswerable questions from answerable
    # ones; serving then answers with a span wherever there are passages
    adapter = AnswerAdapter("answers", 1.82, per_version_margin=True)
    assert adapter.margin_for(_version(tmp_path, "v1", {"abstain_margin": "never"})) == math.inf
    assert recorded_margin(math.inf) == "never" and recorded_margin(0.5) == 0.5
    assert json.loads(json.dumps({"m": recorded_margin(math.inf)}))["m"] == "never"
    assert gate_margin("sometimes") is None and gate_margin(True) is None


@pytest.mark.parametrize(("value", "margin"), [("never", math.inf), ("NEVER", math.inf),
                                              ("none", None), ("1.5", 1.5)])
def test_the_operator_may_set_never_or_none(monkeypatch, value, margin):
    monkeypatch.setenv("CUSTOMLLM_ANSWER_ADAPTER_ABSTAIN_MARGIN", value)
    adapter = from_settings(AnswerAdapterSettings())
    assert adapter is not None and adapter.abstain_margin == margin


def test_a_rewritten_gate_is_read_again(tmp_path):
    # read on every request but parsed once per file state: a promoted version's gate that a
    # person rewrites takes effect on the next request
    adapter = AnswerAdapter("answers", 1.82, per_version_margin=True)
    folder = _version(tmp_path, "v1", {"abstain_margin": 0.47})
    assert adapter.margin_for(folder) == 0.47
    (folder / "gate.json").write_text(json.dumps({"abstain_margin": 0.925, "passed": True}))
    assert adapter.margin_for(folder) == 0.925


def _served(margin: float | None):
    from services.common.generation.local_backend import ServedAnswerAdapter

    return ServedAnswerAdapter("domain-answers", margin, words_inside=True, focus_sentences=3)


def test_an_adapter_without_a_margin_takes_the_templates():
    from services.common.generation.base import Extractive
    from services.common.generation.local_backend import adapter_spec

    asked = Extractive(((1, "text"),), "I don't know.", abstain_margin=1.5, question="Who?")
    continued = adapter_spec(asked, _served(None))
    assert (continued.abstain_margin, continued.question_words_inside,
            continued.focus_sentences) == (1.5, True, 3)
    assert adapter_spec(asked, _served(2.5)).abstain_margin == 2.5  # its calibration wins
    unset = Extractive(((1, "text"),), "I don't know.", question="Who?")
    assert adapter_spec(unset, _served(None)).abstain_margin is None
