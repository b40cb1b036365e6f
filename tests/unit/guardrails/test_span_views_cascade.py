"""The span-views experiment's cascade (``benchmarks.guardrails_span_views``): a sentence view
is read alone only when its pooled estimate is near the threshold and no window fired, so its
figures describe the rule its record states."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.guardrails_span_views import scheme_scores
from services.common.linear_head import LinearHead
from services.guardrails.head_training import Embedded

pytestmark = pytest.mark.unit

# p = sigmoid(4 x0): x0 = 0 reads 0.5; the threshold is 0.6
HEAD = LinearHead(np.asarray([4.0, 0.0]), 0.0, 0.6)


def _v(*x0: float) -> np.ndarray:
    return np.asarray([[x, 0.0] for x in x0])


def _run(exact: np.ndarray, pooled: np.ndarray, delta: float | None):
    separate = Embedded(exact[:1], [exact])
    return scheme_scores({"s": HEAD}, np.asarray(["s"]), [1], separate, [pooled], delta)


def test_a_pooled_estimate_far_below_the_threshold_is_kept():
    # the sentence alone would fire (x0 = 1: 0.98), its pooled estimate does not come near
    scores, thresholds, encoded = _run(_v(-1.0, 1.0), _v(-1.0, -1.0), 0.1)
    assert encoded == 0 and scores[0] == pytest.approx(HEAD.proba(_v(-1.0))[0])
    assert thresholds[0] == 0.6


def test_an_estimate_near_the_threshold_is_read_alone():
    scores, _, encoded = _run(_v(-1.0, 1.0), _v(-1.0, 0.05), 0.1)
    assert encoded == 1 and scores[0] == pytest.approx(HEAD.proba(_v(1.0))[0])


def test_a_window_that_fired_reads_no_sentence_alone():
    _, _, encoded = _run(_v(1.0, 1.0), _v(1.0, 0.05), 0.1)
    assert encoded == 0


def test_the_bounds_every_view_alone_and_every_sentence_pooled():
    exact, pooled = _v(-1.0, 1.0), _v(-1.0, 0.05)
    assert _run(exact, pooled, None)[0][0] == pytest.approx(HEAD.proba(_v(1.0))[0])
    assert _run(exact, pooled, float("-inf"))[2] == 0
