"""Compare two runs case by case and gate a candidate against a baseline.

Run ``a`` is the baseline, run ``b`` the candidate; deltas are ``b - a``. Only cases present in
both runs, and for each metric only cases where both runs define it, are compared, so the two
means always describe the same questions. Comparing runs over different test sets or configs
is the caller's job to refuse (see ``RunConfig``).

The gate: a metric **regresses** when BOTH

1. the candidate is worse than the baseline by more than the metric's tolerance
   (``Tolerance.absolute``, plus ``Tolerance.relative`` × |baseline| for relative ones such as
   latency), AND
2. the paired bootstrap confidence interval of the delta excludes zero on the bad side
   (``hi < 0`` when higher is better, ``lo > 0`` when lower is better),

so sampling noise on a small test set does not fail the gate, and a tiny but certain change
does not either. A tolerance with ``require_significance=False`` drops condition 2: the
default for ``pii_leak``, where a single new leak is a failure, not noise.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from services.common.evaluation.bootstrap import paired_bootstrap_delta
from services.common.evaluation.metrics import LOWER_IS_BETTER
from services.common.evaluation.models import CaseResult
from services.common.evaluation.summary import HEADLINE_METRICS

__all__ = [
    "COMPARE_METRICS",
    "DEFAULT_TOLERANCES",
    "MEDIAN_METRICS",
    "GateResult",
    "MetricDelta",
    "Tolerance",
    "by_case_id",
    "compare",
    "gate",
]

COMPARE_METRICS: tuple[str, ...] = (*HEADLINE_METRICS, "false_abstention", "pii_leak", "error",
                                    "latency_total_ms")
"""Compared by default: the headline metrics plus every metric with a default tolerance."""

MEDIAN_METRICS: frozenset[str] = frozenset({"latency_total_ms"})
"""Compared on their median (p50) instead of their mean: latency is skewed."""


@dataclass(frozen=True)
class MetricDelta:
    """One metric compared on ``n`` paired cases. ``a_mean``/``b_mean`` are the baseline's and
    the candidate's statistic over those cases (the mean, or the median for
    :data:`MEDIAN_METRICS`, see ``statistic``); ``delta = b_mean - a_mean`` and ``[lo, hi]`` its
    paired bootstrap interval. All ``None`` when ``n == 0``."""

    name: str
    a_mean: float | None
    b_mean: float | None
    delta: float | None
    lo: float | None
    hi: float | None
    n: int
    higher_is_better: bool
    statistic: str = "mean"


@dataclass(frozen=True)
class Tolerance:
    """How much worse the candidate may be: ``absolute + relative * |baseline|``."""

    absolute: float = 0.0
    relative: float = 0.0
    require_significance: bool = True

    def allowed(self, baseline: float | None) -> float:
        return self.absolute + self.relative * abs(baseline or 0.0)


DEFAULT_TOLERANCES: dict[str, Tolerance] = {
    "f1": Tolerance(absolute=0.02),
    "exact_match": Tolerance(absolute=0.02),
    "hit@5": Tolerance(absolute=0.02),
    "faithfulness": Tolerance(absolute=0.05),
    "abstention_correct": Tolerance(absolute=0.05),
    "false_abstention": Tolerance(absolute=0.05),
    "pii_leak": Tolerance(absolute=0.0, require_significance=False),
    "error": Tolerance(absolute=0.0),
    "latency_total_ms": Tolerance(relative=0.5),  # p50 may grow by up to 50 %
}


@dataclass(frozen=True)
class GateResult:
    passed: bool
    failures: list[str]
    checked: list[str]
    skipped: list[str] = field(default_factory=list)


def by_case_id(results: Sequence[CaseResult], per_case: Sequence[Mapping[str, float | None]],
               ) -> dict[str, dict[str, float | None]]:
    """``{case_id: scores}`` from a run's results and their :func:`metrics.score_case` rows
    (aligned by position), the input :func:`compare` takes."""
    if len(results) != len(per_case):
        raise ValueError(f"{len(per_case)} score rows for {len(results)} results")
    return {r.case_id: dict(row) for r, row in zip(results, per_case, strict=True)}


def _defined(v: float | None) -> bool:
    return v is not None and math.isfinite(v)


def compare(per_case_a: Mapping[str, Mapping[str, float | None]],
            per_case_b: Mapping[str, Mapping[str, float | None]],
            metrics: Sequence[str] = COMPARE_METRICS, n_boot: int = 1000, seed: int = 0,
            alpha: float = 0.05) -> list[MetricDelta]:
    """Baseline ``a`` vs candidate ``b``: one :class:`MetricDelta` per metric, over the case ids
    both hold (sorted, so the result does not depend on dict order) and, per metric, the cases
    where both define it (:func:`bootstrap.paired_bootstrap_delta`, ``n_boot`` resamples,
    ``seed``, ``1 - alpha`` interval)."""
    common = sorted(set(per_case_a) & set(per_case_b))
    deltas = []
    for name in metrics:
        statistic = "median" if name in MEDIAN_METRICS else "mean"
        xa = [per_case_a[c].get(name) for c in common]
        xb = [per_case_b[c].get(name) for c in common]
        delta, lo, hi, n = paired_bootstrap_delta(xa, xb, n_boot=n_boot, alpha=alpha, seed=seed,
                                                  statistic=statistic)
        pairs = [(x, y) for x, y in zip(xa, xb, strict=True) if _defined(x) and _defined(y)]
        reduce = np.median if statistic == "median" else np.mean
        a_stat = float(reduce([p[0] for p in pairs])) if pairs else None
        b_stat = float(reduce([p[1] for p in pairs])) if pairs else None
        deltas.append(MetricDelta(name=name, a_mean=a_stat, b_mean=b_stat, delta=delta, lo=lo,
                                  hi=hi, n=n, higher_is_better=name not in LOWER_IS_BETTER,
                                  statistic=statistic))
    return deltas


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.4g}"


def gate(deltas: Sequence[MetricDelta],
         tolerances: Mapping[str, Tolerance | float] = DEFAULT_TOLERANCES) -> GateResult:
    """Pass or fail a candidate (see the module docstring for the rule).

    Only metrics with a tolerance are checked (a plain float means an absolute tolerance). A
    checked metric that no paired case defines is listed in ``skipped``. The gate fails when a
    checked metric regresses, and also when nothing at all could be checked (no common case):
    a gate that compared nothing must not say "pass".
    """
    failures: list[str] = []
    checked: list[str] = []
    skipped: list[str] = []
    for d in deltas:
        tol = tolerances.get(d.name)
        if tol is None:
            continue
        if not isinstance(tol, Tolerance):
            tol = Tolerance(absolute=float(tol))
        if d.n == 0 or d.delta is None or d.lo is None or d.hi is None:
            skipped.append(f"{d.name}: no case where both runs define it")
            continue
        checked.append(d.name)
        worse_by = -d.delta if d.higher_is_better else d.delta
        allowed = tol.allowed(d.a_mean)
        significant = d.hi < 0 if d.higher_is_better else d.lo > 0
        if worse_by > allowed + 1e-12 and (significant or not tol.require_significance):
            label = "p50" if d.statistic == "median" else "mean"
            failures.append(
                f"{d.name}: {label} {_fmt(d.a_mean)} -> {_fmt(d.b_mean)} "
                f"(delta {d.delta:+.4g}, CI [{d.lo:+.4g}, {d.hi:+.4g}], n={d.n}); "
                f"{'lower' if not d.higher_is_better else 'higher'} is better, "
                f"tolerance {allowed:.4g}")
    if not checked:
        failures.append("nothing was compared: no metric with a tolerance is defined on a case "
                        "common to both runs")
    return GateResult(passed=not failures, failures=failures, checked=checked, skipped=skipped)
