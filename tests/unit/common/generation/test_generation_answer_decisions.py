"""The answer adapter's "don't know" decision, replayed as the benchmark and serving make it:
both ways by the calibrated margin, the margin chosen for at most 10% false "don't know"."""

from __future__ import annotations

import pytest

from benchmarks.answers import Outcome, by_margin, calibrate, own_choice

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


def test_calibration_keeps_false_dont_know_within_ten_percent():
    answerable = [_outcome(True, d, False) for d in (-3, -2, -1, -0.5, 0, 0.2, 0.4, 0.6, 0.8, 3)]
    unanswerable = [_outcome(False, d, False) for d in (-1, 0.5, 1.0, 2.0, 4.0)]
    margin = calibrate(answerable + unanswerable)
    decided = by_margin(answerable, margin, NO)
    assert sum(o.abstained for o in decided) / len(decided) <= 0.10
    assert margin == 0.8  # the lowest such margin: it catches the most unanswerable ones
