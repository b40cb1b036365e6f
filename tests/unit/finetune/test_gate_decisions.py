"""The promotion gate decides with the evaluation harness's rule, both ways."""

from __future__ import annotations

import pytest

from services.common.evaluation.compare import DEFAULT_TOLERANCES, Tolerance
from services.finetune.cards import adapter_card, lorax_adapter, serving_lines, vllm_lora_module
from services.finetune.gate import (
    GateConfigError,
    decide,
    not_run,
    tolerances_from_mapping,
)

pytestmark = pytest.mark.unit


def _runs(base_f1: list[float], cand_f1: list[float], cand_error: float = 0.0):
    base = {f"c{i}": {"f1": f, "error": 0.0, "pii_leak": 0.0} for i, f in enumerate(base_f1)}
    cand = {f"c{i}": {"f1": f, "error": cand_error, "pii_leak": 0.0}
            for i, f in enumerate(cand_f1)}
    return base, cand


def test_a_candidate_as_good_or_better_passes():
    base, cand = _runs([0.2, 0.4, 0.3, 0.5] * 5, [0.6, 0.7, 0.5, 0.8] * 5)
    decision = decide(base, cand, DEFAULT_TOLERANCES, baseline="base", candidate="fmt@v1",
                      n_boot=200)
    assert decision.passed, decision.failures
    assert "f1" in decision.checked and decision.reason.startswith("passed")
    assert decision.metrics()["f1"] == pytest.approx(0.65)
    assert decision.metrics()["baseline_f1"] == pytest.approx(0.35)


def test_a_significant_regression_fails_and_says_why():
    base, cand = _runs([0.8, 0.9, 0.7, 0.85] * 5, [0.1, 0.2, 0.15, 0.1] * 5)
    decision = decide(base, cand, DEFAULT_TOLERANCES, baseline="support@v1",
                      candidate="support@v2", n_boot=200)
    assert not decision.passed
    assert any(f.startswith("f1:") for f in decision.failures)
    assert decision.reason.startswith("failed: f1")


def test_a_new_error_fails_the_gate():
    base, cand = _runs([0.5] * 10, [0.5] * 10, cand_error=1.0)
    decision = decide(base, cand, DEFAULT_TOLERANCES, baseline="base", candidate="x@v1",
                      n_boot=200)
    assert not decision.passed and any(f.startswith("error:") for f in decision.failures)


def test_a_generous_tolerance_lets_the_same_regression_pass():
    base, cand = _runs([0.8, 0.9, 0.7, 0.85] * 5, [0.1, 0.2, 0.15, 0.1] * 5)
    loose = tolerances_from_mapping({"f1": 1.0})
    assert decide(base, cand, loose, baseline="base", candidate="x@v1", n_boot=200).passed


def test_comparing_nothing_never_passes():
    decision = decide({"a": {"f1": 1.0}}, {"b": {"f1": 1.0}}, DEFAULT_TOLERANCES,
                      baseline="base", candidate="x@v1", n_boot=50)
    assert not decision.passed and "nothing was compared" in decision.failures[-1]
    assert not not_run("no test set", "x@v1").passed


def test_tolerances_merge_over_the_defaults():
    merged = tolerances_from_mapping({"f1": 0.5, "latency_total_ms": None,
                                      "hit@5": {"absolute": 0.1, "relative": 0.2,
                                                "require_significance": False}})
    assert merged["f1"] == Tolerance(absolute=0.5)
    assert "latency_total_ms" not in merged
    assert merged["hit@5"] == Tolerance(0.1, 0.2, False)
    assert merged["error"] == DEFAULT_TOLERANCES["error"]
    for bad in ({"f1": -0.1}, {"f1": "x"}, {"f1": {"absolut": 1}},
                {"f1": {"require_significance": "yes"}}):
        with pytest.raises(GateConfigError):
            tolerances_from_mapping(bad)


def test_the_card_carries_metrics_gate_and_serving_lines():
    base, cand = _runs([0.2] * 8, [0.6] * 8)
    decision = decide(base, cand, DEFAULT_TOLERANCES, baseline="base", candidate="fmt@v2",
                      n_boot=100)
    card = adapter_card(name="fmt", version="v2", base_model="org/Base-1", method="lora",
                        job_id="job-9", path="/srv/adapters/fmt@v2", status="promoted",
                        hyperparameters={"lora_r": 8}, training={"steps": 4, "final_loss": 1.5},
                        dataset={"snapshot_id": "abc", "n_examples": 12},
                        gate=decision.to_dict(), data_card_markdown="# Data card\n\n12 rows")
    assert "# Adapter `fmt@v2`" in card and "| status | promoted |" in card
    assert "Gate **passed**" in card and "| f1 | 0.2 | 0.6 |" in card
    assert "--lora-modules fmt=/srv/adapters/fmt@v2" in card
    assert '"adapter_source": "local"' in card and "12 rows" in card
    assert vllm_lora_module("fmt", "/p") == "fmt=/p"
    assert lorax_adapter("/p") == {"adapter_id": "/p", "adapter_source": "local"}
    assert serving_lines("fmt@v2", "fmt", "/p", "org/Base-1")["customllm (OpenAI API)"] == \
        'model: "Base-1:fmt@v2"'


def test_a_card_continued_from_the_answer_adapter_says_what_it_could_teach():
    counts = {"answerable": 15, "unanswerable": 4, "not_in_layout": 0, "not_writable": 14}
    card = adapter_card(name="acme", version="v2", base_model="org/Base-1", method="lora",
                        job_id="job-9", path="/p", status="candidate",
                        hyperparameters={"init_adapter": "answers@v1"},
                        training={"steps": 6, "answer_examples": counts},
                        dataset={"n_examples": 33}, gate=None)
    assert ("Continued from `answers@v1` on its compact prompt: 15 cited answers and 4 "
            "\"don't know\" taught; skipped 0 outside the prompt layout and 14 whose answer is "
            "not a span of its passage") in card
    plain = adapter_card(name="acme", version="v1", base_model="org/Base-1", method="lora",
                         job_id=None, path="/p", status="candidate", hyperparameters={},
                         training={"steps": 6}, dataset={}, gate=None)
    assert "compact prompt" not in plain
