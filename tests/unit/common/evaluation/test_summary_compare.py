"""summarize (means, CIs, tags, latency, tokens, counts), worst cases, compare and the gate."""

import math

import pytest

from services.common.evaluation.compare import (
    DEFAULT_TOLERANCES,
    MetricDelta,
    Tolerance,
    by_case_id,
    compare,
    gate,
)
from services.common.evaluation.metrics import METRIC_KEYS, score_case
from services.common.evaluation.models import CaseUsage
from services.common.evaluation.summary import HEADLINE_METRICS, summarize, worst_cases

pytestmark = pytest.mark.unit

TEMPLATE = "I don't know based on the provided documents."


def walk_floats(value):
    if isinstance(value, dict):
        for v in value.values():
            yield from walk_floats(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from walk_floats(v)
    elif isinstance(value, float):
        yield value


@pytest.fixture
def run(make_result, fake_embed):
    ctx = ["The Eiffel Tower is in Paris. It was completed in 1889."]
    results = [
        make_result(case_id="a", tags=["geo"], answers=["Paris"], answer="Paris",
                    gold_doc_ids=["d1"], retrieved_doc_ids=["d1"], cited_doc_ids=["d1"],
                    contexts=ctx, latency_ms={"retrieve": 10.0, "total": 100.0},
                    usage=CaseUsage(prompt_tokens=100, completion_tokens=10, cost_usd=0.001)),
        make_result(case_id="b", tags=["geo", "history"], answers=["1889"],
                    answer="It was completed in 1901.", gold_doc_ids=["d1"],
                    retrieved_doc_ids=["d2"], contexts=ctx,
                    latency_ms={"retrieve": 20.0, "total": 200.0},
                    usage=CaseUsage(prompt_tokens=200, completion_tokens=20, cost_usd=0.002)),
        make_result(case_id="c", tags=["refusal"], expected="refuse", answer=TEMPLATE,
                    latency_ms={"retrieve": 30.0, "total": 300.0}, cached=True),
        make_result(case_id="d", expected="refuse", answer="It is 42.",
                    latency_ms={"retrieve": 40.0, "total": 400.0}),
        make_result(case_id="e", answers=["x"], status="error", error="timeout",
                    latency_ms={"total": 5000.0}),
    ]
    per_case = [score_case(r, fake_embed, TEMPLATE) for r in results]
    return results, per_case


def test_summarize(run):
    results, per_case = run
    s = summarize(per_case, results, n_boot=200, seed=0)
    assert list(s["metrics"]) == list(METRIC_KEYS)
    assert all(math.isfinite(v) for v in walk_floats(s))
    f1 = s["metrics"]["f1"]
    # a: 1.0; b: [it, was, completed, in, 1901] vs [1889] -> 0.0; e errored -> undefined
    assert (f1["mean"], f1["n"]) == (0.5, 2) and f1["lo"] <= 0.5 <= f1["hi"]
    assert s["metrics"]["abstention_correct"]["mean"] == 0.5       # c right, d wrong
    assert s["metrics"]["error"]["mean"] == pytest.approx(0.2)
    assert s["metrics"]["toxicity"]["n"] in (0, 4)                 # 0 without the package
    assert s["by_tag"]["geo"]["f1"] == 0.5
    assert s["by_tag"]["history"]["f1"] == 0.0
    assert s["by_tag"]["refusal"]["abstention_correct"] == 1.0
    assert s["by_tag"]["refusal"]["f1"] is None
    assert set(s["by_tag"]["geo"]) == set(HEADLINE_METRICS)
    assert s["tag_counts"] == {"geo": 2, "history": 1, "refusal": 1}
    # totals 100..400 (the errored 5000 is left out): p50 = 250, p95 = 300 + .85 * 100 = 385
    assert list(s["latency"]) == ["retrieve", "total"]
    assert s["latency"]["total"]["p50"] == 250.0
    assert s["latency"]["total"]["p95"] == pytest.approx(385.0)
    assert s["latency"]["total"]["n"] == 4
    assert s["tokens"]["prompt_tokens"] == {"total": 300, "p50": 0.0}
    assert s["tokens"]["total_tokens"]["total"] == 330
    assert s["cost_usd"] == pytest.approx(0.003)
    assert s["counts"] == {"cases": 5, "errors": 1, "abstained": 0, "refused": 0, "cached": 1,
                           "expected_answer": 3, "expected_refuse": 2}
    assert s["bootstrap"] == {"method": "percentile", "n_boot": 200, "alpha": 0.05, "seed": 0}


def test_summarize_is_deterministic(run):
    results, per_case = run
    assert summarize(per_case, results, seed=3) == summarize(per_case, results, seed=3)


def test_summarize_all_abstained(make_result, fake_embed):
    results = [make_result(case_id=str(i), answers=["Paris"], answer=TEMPLATE, abstained=True,
                           contexts=["Some context."]) for i in range(4)]
    per_case = [score_case(r, fake_embed, TEMPLATE) for r in results]
    s = summarize(per_case, results, n_boot=100)
    assert s["metrics"]["false_abstention"] == {"mean": 1.0, "lo": 1.0, "hi": 1.0, "n": 4}
    assert s["metrics"]["faithfulness"] == {"mean": None, "lo": None, "hi": None, "n": 0}
    assert s["metrics"]["f1"]["mean"] == 0.0
    assert s["counts"]["abstained"] == 4
    assert all(math.isfinite(v) for v in walk_floats(s))


def test_summarize_empty_run():
    s = summarize([], [])
    assert s["metrics"]["f1"] == {"mean": None, "lo": None, "hi": None, "n": 0}
    assert s["latency"] == {} and s["counts"]["cases"] == 0 and s["cost_usd"] == 0.0
    with pytest.raises(ValueError):
        summarize([{}], [])


def test_worst_cases(run):
    results, per_case = run
    worst = worst_cases(results, per_case, n=5)
    # badness 1: d (answered a refusal), e (error), b (F1 0): hard failures first, then by F1
    # and id; a is fine
    assert [w["case_id"] for w in worst] == ["d", "e", "b"]
    assert worst[0]["reasons"] == ["answered a question it should refuse"]
    assert worst[1]["reasons"] == ["error: timeout"]
    assert "F1 0.00" in worst[2]["reasons"] and "no gold document retrieved" in worst[2]["reasons"]
    assert worst_cases(results, per_case, n=1) == worst[:1]


# ---------------------------------------------------------------------------------- compare

def scores(n, **metrics):
    """n cases, each metric a constant or a list of per-case values."""
    out = {}
    for i in range(n):
        out[f"case-{i}"] = {k: (v[i] if isinstance(v, list) else v) for k, v in metrics.items()}
    return out


BASE = dict(f1=[0.6 + 0.3 * ((i * 7) % 5) / 4 for i in range(40)], exact_match=0.5,
            faithfulness=0.9, pii_leak=0.0, error=0.0,
            latency_total_ms=[100.0 + 10 * (i % 7) for i in range(40)])


def test_compare_pairs_common_cases_only():
    a = scores(3, f1=[1.0, 0.5, None])
    b = scores(4, f1=[0.5, 0.5, 1.0, 0.0])
    (d,) = compare(a, b, metrics=["f1"], n_boot=100)
    # pairs (1, .5), (.5, .5); case-2 undefined in a; case-3 only in b
    assert (d.name, d.n, d.a_mean, d.b_mean, d.delta) == ("f1", 2, 0.75, 0.5, -0.25)
    assert d.lo <= d.delta <= d.hi and d.higher_is_better and d.statistic == "mean"


def test_compare_identical_runs_gives_zero_and_passes():
    a = scores(40, **BASE)
    deltas = compare(a, dict(a))
    assert all(d.delta == 0.0 and d.lo == 0.0 and d.hi == 0.0 for d in deltas if d.n)
    result = gate(deltas)
    assert result.passed and not result.failures
    assert {"f1", "exact_match", "faithfulness", "pii_leak", "error",
            "latency_total_ms"} <= set(result.checked)
    assert any(s.startswith("hit@5") for s in result.skipped)   # not in these scores


def test_gate_fails_on_a_planted_regression():
    a = scores(40, **BASE)
    b = scores(40, **{**BASE, "f1": [v - 0.3 for v in BASE["f1"]]})
    result = gate(compare(a, b))
    assert not result.passed
    assert len(result.failures) == 1 and result.failures[0].startswith("f1:")


def test_gate_ignores_noise_below_significance():
    # one case of 30 drops from 0.8 to 0: delta -0.027 is beyond the 0.02 tolerance, but the
    # CI reaches 0 (a third of the resamples miss that case), so it is not a regression
    a = scores(30, f1=0.8)
    b = scores(30, f1=[0.0] + [0.8] * 29)
    (d,) = compare(a, b, metrics=["f1"])
    assert d.delta == pytest.approx(-0.8 / 30) and d.hi == 0.0
    assert gate([d]).passed


def test_gate_does_not_fail_improvements_or_changes_within_tolerance():
    a = scores(40, **BASE)
    better = scores(40, **{**BASE, "f1": [min(1.0, v + 0.2) for v in BASE["f1"]]})
    assert gate(compare(a, better)).passed
    slightly = scores(40, **{**BASE, "f1": [v - 0.01 for v in BASE["f1"]]})
    assert gate(compare(a, slightly)).passed       # certain but within 0.02


def test_gate_fails_on_any_new_pii_leak():
    a = scores(40, **BASE)
    b = scores(40, **{**BASE, "pii_leak": [1.0] + [0.0] * 39})
    result = gate(compare(a, b))
    assert not result.passed and result.failures[0].startswith("pii_leak:")


def test_gate_on_latency_p50_is_relative():
    a = scores(40, **BASE)
    slower = scores(40, **{**BASE, "latency_total_ms": [2 * v for v in BASE["latency_total_ms"]]})
    deltas = {d.name: d for d in compare(a, slower)}
    assert deltas["latency_total_ms"].statistic == "median"
    assert not deltas["latency_total_ms"].higher_is_better
    result = gate(deltas.values())
    assert not result.passed and result.failures[0].startswith("latency_total_ms: p50")
    a_bit = scores(40, **{**BASE, "latency_total_ms": [1.2 * v for v in BASE["latency_total_ms"]]})
    assert gate(compare(a, a_bit)).passed


def test_gate_with_nothing_to_compare_fails():
    result = gate(compare(scores(3, f1=1.0), {"other": {"f1": 1.0}}))
    assert not result.passed and result.checked == []
    assert "nothing was compared" in result.failures[-1]


def test_gate_accepts_plain_float_tolerances():
    d = MetricDelta("f1", 0.8, 0.7, -0.1, -0.15, -0.05, 50, True)
    assert not gate([d], {"f1": 0.05}).passed
    assert gate([d], {"f1": 0.2}).passed
    assert gate([d], {"f1": Tolerance(absolute=0.05, require_significance=True)}).failures
    assert "f1" in DEFAULT_TOLERANCES


def test_by_case_id(run):
    results, per_case = run
    mapping = by_case_id(results, per_case)
    assert list(mapping) == ["a", "b", "c", "d", "e"] and mapping["a"] == per_case[0]
    with pytest.raises(ValueError):
        by_case_id(results, per_case[:1])
