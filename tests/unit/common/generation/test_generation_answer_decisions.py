"""The answer adapter's "don't know" decision, replayed as the benchmark and serving make it:
both ways by the calibrated margin, the margin chosen for at most 10% false "don't know"."""

from __future__ import annotations

import json
import math

import pytest

from benchmarks.answers import (
    PREVIOUS_ROW,
    MarginCount,
    Outcome,
    by_margin,
    calibrate,
    choose_margin,
    own_choice,
    tells_apart,
    write_gate,
)
from services.common.generation.answer_adapter import gate_margin, read_gate, recorded_margin

pytestmark = pytest.mark.unit

NO = "I don't know."


def _outcome(answerable: bool, decision: float, chose_no: bool) -> Outcome:
    return Outcome(qid=f"{answerable}{decision}", answerable=answerable,
                   answers=("x",) if answerable else (), gold_n=1, text="x [1]", latency_s=1.0,
                   completion_tokens=3, abstained=False,
                   scores={"decision": decision, "chose_no_answer": float(chose_no)})


def test_own_choice_keeps_what_the_adapter_wrote():
    decided = own_choice([_outcome(True, 0.3, True), _outcome(True, -2.0, False)], NO)
    assert [o.text for o in decided] == [NO, "x [1]"]


def test_the_margin_decides_both_ways():
    outcomes = [_outcome(True, 0.3, True), _outcome(False, 2.0, False)]
    decided = by_margin(outcomes, 1.0, NO)
    assert [o.abstained for o in decided] == [False, True]
    assert decided[0].text == "x [1]" and decided[1].text == NO


def test_an_infinite_margin_gives_a_span_for_every_question():
    # the benchmark's "a span for every question" row: even where the adapter wrote "don't
    # know" (the run forced a span there), the forced span is what is scored
    outcomes = [_outcome(True, 0.3, True), _outcome(False, 50.0, False)]
    decided = by_margin(outcomes, math.inf, NO)
    assert [o.abstained for o in decided] == [False, False]
    assert [o.text for o in decided] == ["x [1]", "x [1]"]


def test_calibration_keeps_false_dont_know_within_ten_percent():
    # 45 answerable questions, four over 0.8 (five over 0.7); 20 unanswerable, twelve over 0.8
    answerable = [_outcome(True, d / 10, False) for d in range(-32, 9)] + \
        [_outcome(True, d, False) for d in (0.9, 1.0, 3.0, 5.0)]
    unanswerable = [_outcome(False, d, False) for d in (-1, -0.5, 0, 0.1, 0.2, 0.3, 0.4, 0.5)] + \
        [_outcome(False, 0.9 + d / 10, False) for d in range(12)]
    margin = calibrate(answerable + unanswerable)
    decided = by_margin(answerable, margin, NO)
    assert sum(o.abstained for o in decided) / len(decided) <= 0.10
    assert margin == 0.8  # the lowest such margin: it catches the most unanswerable ones


def test_a_margin_that_abstains_as_often_on_either_kind_is_not_chosen():
    # every margin says "don't know" on answerable and unanswerable questions alike: a margin
    # within the budget exists, but it would only trade right answers for refusals at random
    scores = [d / 10 for d in range(-20, 20)]
    outcomes = [_outcome(True, d, False) for d in scores] + \
        [_outcome(False, d, False) for d in scores[::2]]
    assert calibrate(outcomes) == math.inf
    decided = by_margin(outcomes, calibrate(outcomes), NO)
    assert not any(o.abstained for o in decided)


def test_telling_apart_needs_more_than_a_higher_rate_on_few_questions():
    assert not tells_apart(MarginCount(1.0, caught=3, unanswerable=5, false=1, answerable=10))
    assert tells_apart(MarginCount(1.0, caught=30, unanswerable=50, false=10, answerable=100))


def test_the_shipped_margin_follows_its_recorded_calibration_sweep():
    # the shipped gate records the calibration sweep it was chosen from: the rule, applied to
    # it again, gives the margin served
    gate = read_gate()
    calibration = gate["calibration"]
    sizes = calibration["questions"]
    counts = [MarginCount(float(m), round(row["correct_no_answer"] * sizes["unanswerable"]),
                          sizes["unanswerable"],
                          round(row["false_no_answer"] * sizes["answerable"]),
                          sizes["answerable"])
              for m, row in calibration["sweep"].items()]
    assert recorded_margin(choose_margin(counts)) == gate["abstain_margin"]
    assert gate_margin(gate["abstain_margin"]) == math.inf  # none told them apart


def _row(em: float, f1: float) -> dict[str, float]:
    return {"exact_match": em, "token_f1": f1}


@pytest.mark.parametrize(("previous", "passed"), [
    (None, True),                    # no previous adapter measured: the base decides
    (_row(0.20, 0.37), True),        # better F1, EM not lower
    (_row(0.30, 0.37), False),       # better F1 but EM lost
    (_row(0.25, 0.45), False),       # F1 not better
])
def test_the_gate_also_requires_beating_a_measured_previous_adapter(tmp_path, previous, passed):
    rows = {"base + constraint": _row(0.07, 0.16), "adapter + constraint": _row(0.25, 0.40),
            "adapter + constraint + abstention (default)": _row(0.25, 0.45)}
    if previous is not None:
        rows[PREVIOUS_ROW] = previous
    write_gate(tmp_path, rows, 0.5, {"held_out": {}, "command": "x"})
    gate = json.loads((tmp_path / "gate.json").read_text())
    assert gate["passed"] is passed
    assert (PREVIOUS_ROW in gate["compared"]) is (previous is not None)
