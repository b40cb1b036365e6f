"""Bootstrap CIs: hand-checkable means, determinism per seed, sanity of the intervals."""

import math

import pytest

from services.common.evaluation.bootstrap import bootstrap_ci, paired_bootstrap_delta

pytestmark = pytest.mark.unit

VALUES = [0.0, 1.0, 1.0, 0.0, 1.0, 0.5, 0.25, 1.0, 0.0, 0.75]


def test_mean_is_the_plain_mean_of_defined_values():
    mean, lo, hi = bootstrap_ci([0.0, 1.0, None, 1.0, 0.0, 1.0])   # 3/5
    assert mean == pytest.approx(0.6)
    assert lo <= mean <= hi


def test_deterministic_for_a_seed():
    assert bootstrap_ci(VALUES, seed=7) == bootstrap_ci(VALUES, seed=7)
    assert bootstrap_ci(VALUES, seed=7) != bootstrap_ci(VALUES, seed=8)
    assert bootstrap_ci(VALUES, n_boot=500, seed=1)[0] == bootstrap_ci(VALUES, seed=2)[0]


def test_ci_contains_the_mean_and_stays_in_range():
    for seed in range(20):
        mean, lo, hi = bootstrap_ci(VALUES, n_boot=200, seed=seed)
        assert 0.0 <= lo <= mean <= hi <= 1.0
        assert hi > lo


def test_ci_width_is_plausible():
    # 400 fair coin flips: the standard error is 0.025, so a 95% CI is about ±0.049
    values = [float(i % 2) for i in range(400)]
    mean, lo, hi = bootstrap_ci(values, n_boot=2000, seed=0)
    assert mean == 0.5
    assert 0.08 < hi - lo < 0.12


def test_edge_cases():
    assert bootstrap_ci([]) == (None, None, None)
    assert bootstrap_ci([None, None]) == (None, None, None)
    assert bootstrap_ci([float("nan")]) == (None, None, None)
    assert bootstrap_ci([0.3]) == (0.3, 0.3, 0.3)
    assert bootstrap_ci([0.7] * 50) == (0.7, 0.7, 0.7)
    with pytest.raises(ValueError):
        bootstrap_ci(VALUES, n_boot=0)
    with pytest.raises(ValueError):
        bootstrap_ci(VALUES, alpha=1.5)


def test_large_input_is_resampled_in_blocks():
    values = [float(i % 3 == 0) for i in range(30_000)]
    mean, lo, hi = bootstrap_ci(values, n_boot=200, seed=0)
    assert lo < mean < hi and hi - lo < 0.02
    assert all(math.isfinite(x) for x in (mean, lo, hi))


def test_paired_identical_lists_give_zero():
    assert paired_bootstrap_delta(VALUES, list(VALUES)) == (0.0, 0.0, 0.0, len(VALUES))


def test_paired_delta_is_b_minus_a_over_defined_pairs():
    # pairs: (1, .5) only; (None, 1) and (.5, None) are dropped
    assert paired_bootstrap_delta([1.0, None, 0.5], [0.5, 1.0, None]) == (-0.5, -0.5, -0.5, 1)
    assert paired_bootstrap_delta([1.0] * 4, [0.0] * 4) == (-1.0, -1.0, -1.0, 4)
    assert paired_bootstrap_delta([None], [1.0]) == (None, None, None, 0)
    assert paired_bootstrap_delta([], []) == (None, None, None, 0)


def test_paired_ci_contains_delta_and_is_deterministic():
    b = [min(1.0, v + 0.1 * (i % 3)) for i, v in enumerate(VALUES)]
    first = paired_bootstrap_delta(VALUES, b, n_boot=500, seed=3)
    assert first == paired_bootstrap_delta(VALUES, b, n_boot=500, seed=3)
    delta, lo, hi, n = first
    assert n == len(VALUES) and lo <= delta <= hi
    assert delta == pytest.approx(sum(b) / len(b) - sum(VALUES) / len(VALUES))


def test_paired_median_statistic():
    a = [100.0, 200.0, 300.0, 400.0]
    b = [x + 50 for x in a]        # every case 50 ms slower: the median moves by exactly 50
    assert paired_bootstrap_delta(a, b, statistic="median") == (50.0, 50.0, 50.0, 4)
    delta, lo, hi, _ = paired_bootstrap_delta(a, [100.0, 200.0, 900.0, 950.0],
                                              statistic="median")
    # medians: (200 + 900) / 2 = 550 vs (200 + 300) / 2 = 250
    assert delta == 550.0 - 250.0 and lo <= delta <= hi


def test_paired_rejects_bad_input():
    with pytest.raises(ValueError):
        paired_bootstrap_delta([1.0], [1.0, 2.0])
    with pytest.raises(ValueError):
        paired_bootstrap_delta([1.0], [1.0], statistic="p99")
