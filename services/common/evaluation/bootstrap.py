"""Bootstrap confidence intervals: percentile method, deterministic for a seed.

A test set is a sample of the questions users ask, so a mean over it is an estimate; the
interval says how far it could move on another sample of the same size. ``None`` values
(metric undefined for a case) are dropped first; NaN values are dropped too, defensively.
Resampling uses ``numpy.random.default_rng(seed)``: the same values, ``n_boot`` and ``seed``
give the same interval on every machine.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence

import numpy as np

__all__ = ["bootstrap_ci", "paired_bootstrap_delta"]

_MAX_DRAWS_PER_BLOCK = 2_000_000  # resample indices in blocks to bound memory on big sets


def _defined(v: float | None) -> bool:
    return isinstance(v, numbers.Real) and math.isfinite(v)


def _check(n_boot: int, alpha: float) -> None:
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")


def _resampled(columns: Sequence[np.ndarray], statistic: Callable[..., np.ndarray],
               n_boot: int, seed: int) -> np.ndarray:
    """``statistic`` of ``n_boot`` resamples (with replacement, the same indices for every
    column so pairs stay paired)."""
    n = len(columns[0])
    rng = np.random.default_rng(seed)
    rows = max(1, _MAX_DRAWS_PER_BLOCK // n)
    out = []
    for start in range(0, n_boot, rows):
        idx = rng.integers(0, n, size=(min(rows, n_boot - start), n))
        out.append(statistic(*(c[idx] for c in columns)))
    return np.concatenate(out)


def _interval(estimate: float, boots: np.ndarray, alpha: float) -> tuple[float, float, float]:
    lo, hi = np.quantile(boots, [alpha / 2, 1 - alpha / 2])
    # The percentile interval contains the estimate in practice; clamping makes it a promise
    # (reports show "mean [lo, hi]" and a reader must never see the mean outside it).
    return float(estimate), float(min(lo, estimate)), float(max(hi, estimate))


def bootstrap_ci(values: Sequence[float | None], n_boot: int = 1000, alpha: float = 0.05,
                 seed: int = 0) -> tuple[float | None, float | None, float | None]:
    """``(mean, lo, hi)``: the mean of the defined values and its ``1 - alpha`` percentile
    bootstrap interval (the ``alpha/2`` and ``1 - alpha/2`` quantiles, numpy's linear
    interpolation, of the means of ``n_boot`` resamples with replacement of the same size).

    No defined value → ``(None, None, None)``; one value ``v`` → ``(v, v, v)``.
    """
    _check(n_boot, alpha)
    data = np.asarray([float(v) for v in values if _defined(v)], dtype=np.float64)
    if data.size == 0:
        return None, None, None
    if np.all(data == data[0]):  # one value, or all equal: no spread (and no rounding)
        return float(data[0]), float(data[0]), float(data[0])
    mean = float(data.mean())
    boots = _resampled([data], lambda x: x.mean(axis=1), n_boot, seed)
    return _interval(mean, boots, alpha)


def paired_bootstrap_delta(a: Sequence[float | None], b: Sequence[float | None],
                           n_boot: int = 1000, alpha: float = 0.05, seed: int = 0,
                           statistic: str = "mean",
                           ) -> tuple[float | None, float | None, float | None, int]:
    """``(delta, lo, hi, n)`` for candidate ``b`` minus baseline ``a``, paired by position.

    Only positions where both values are defined count (``n`` of them). With
    ``statistic="mean"``, delta = mean(b_i - a_i) and the interval is the percentile
    bootstrap of that mean over resampled pairs. With ``statistic="median"`` (for latency),
    delta = median(b) - median(a) over the pairs, each resample taking the same cases for
    both sides. Identical inputs give ``(0.0, 0.0, 0.0, n)``; no pair gives
    ``(None, None, None, 0)``. Raises ``ValueError`` if the lists differ in length.
    """
    _check(n_boot, alpha)
    if len(a) != len(b):
        raise ValueError(f"paired lists differ in length: {len(a)} vs {len(b)}")
    if statistic not in ("mean", "median"):
        raise ValueError(f"statistic must be 'mean' or 'median', got {statistic!r}")
    pairs = [(float(x), float(y)) for x, y in zip(a, b, strict=True)
             if _defined(x) and _defined(y)]
    n = len(pairs)
    if n == 0:
        return None, None, None, 0
    xa = np.asarray([p[0] for p in pairs], dtype=np.float64)
    xb = np.asarray([p[1] for p in pairs], dtype=np.float64)
    if statistic == "mean":
        diff = xb - xa
        delta = float(diff.mean())
        if n == 1 or np.all(diff == diff[0]):
            return delta, delta, delta, n
        boots = _resampled([diff], lambda d: d.mean(axis=1), n_boot, seed)
    else:
        delta = float(np.median(xb) - np.median(xa))
        if n == 1 or np.array_equal(xa, xb):
            return delta, delta, delta, n
        boots = _resampled([xa, xb], lambda p, q: np.median(q, axis=1) - np.median(p, axis=1),
                           n_boot, seed)
    return (*_interval(delta, boots, alpha), n)
