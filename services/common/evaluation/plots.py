"""Report charts as PNG bytes, drawn with matplotlib's Agg canvas.

Figures are built with ``matplotlib.figure.Figure`` on a ``FigureCanvasAgg``, never through
``pyplot``, so nothing touches the process-wide backend or needs a display, and plotting is
safe in a worker thread. Each function returns ``None`` when there is nothing to draw. PNGs are
written without the "Software" metadata, so the same data gives the same bytes.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from services.common.evaluation.metrics import LOWER_IS_BETTER

__all__ = ["RATE_EXCLUDED", "latency_boxplot", "metric_bars", "tag_heatmap", "to_png"]

RATE_EXCLUDED = frozenset({"latency_total_ms", "prompt_tokens", "completion_tokens",
                           "cost_usd"})
"""Metrics not on a [0, 1] scale, left out of the metric bar chart."""

_GOOD, _BAD = "#3b6ea8", "#c0504d"


def to_png(fig: Figure, dpi: int = 110) -> bytes:
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight",
                metadata={"Software": None})
    return buffer.getvalue()


def _finite(v: Any) -> bool:
    return isinstance(v, int | float) and math.isfinite(v)


def metric_bars(metrics: Mapping[str, Mapping[str, Any]], title: str = "Metrics (mean, 95% CI)",
                ) -> bytes | None:
    """Horizontal bars of each [0, 1] metric's mean with its CI as error bars; metrics where
    lower is better in a second colour. ``metrics`` is ``summary["metrics"]``."""
    rows = [(name, m) for name, m in metrics.items()
            if name not in RATE_EXCLUDED and _finite(m.get("mean"))]
    if not rows:
        return None
    names = [name for name, _ in rows][::-1]
    means = [float(m["mean"]) for _, m in rows][::-1]
    lows = [max(0.0, mean - float(m["lo"])) if _finite(m.get("lo")) else 0.0
            for mean, (_, m) in zip(means, rows[::-1], strict=True)]
    highs = [max(0.0, float(m["hi"]) - mean) if _finite(m.get("hi")) else 0.0
             for mean, (_, m) in zip(means, rows[::-1], strict=True)]
    colors = [_BAD if name in LOWER_IS_BETTER else _GOOD for name in names]
    fig = Figure(figsize=(7.5, 0.36 * len(names) + 1.4))
    ax = fig.add_subplot()
    ax.barh(names, means, xerr=[lows, highs], color=colors, capsize=3,
            error_kw={"elinewidth": 1, "ecolor": "#333333"})
    for y, mean in enumerate(means):  # values in a column right of 1.0, clear of the bars
        ax.text(1.03, y, f"{mean:.3f}", va="center", fontsize=8)
    ax.axvline(1.0, color="#999999", linewidth=0.8)
    ax.set_xlim(0, 1.14)
    ax.set_xlabel("score (blue: higher is better, red: lower is better)")
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    return to_png(fig)


def latency_boxplot(latencies: Sequence[Mapping[str, float]],
                    title: str = "Latency per stage (ms)") -> bytes | None:
    """One box per stage (median, quartiles, 1.5 IQR whiskers, outliers) over the cases'
    ``latency_ms`` dicts; ``total`` last. Log scale when the spread exceeds two decades."""
    stages: dict[str, list[float]] = {}
    for row in latencies:
        for stage, ms in row.items():
            if _finite(ms):
                stages.setdefault(stage, []).append(float(ms))
    if not stages:
        return None
    names = sorted(stages, key=lambda s: (s == "total", list(stages).index(s)))
    data = [stages[s] for s in names]
    fig = Figure(figsize=(7.5, 0.45 * len(names) + 1.6))
    ax = fig.add_subplot()
    ax.boxplot(data, vert=False, widths=0.6)
    ax.set_yticks(range(1, len(names) + 1), [f"{s} (n={len(stages[s])})" for s in names])
    positive = [v for values in data for v in values if v > 0]
    if positive and max(positive) / max(min(positive), 1e-9) > 100:
        ax.set_xscale("log")
    ax.set_xlabel("milliseconds")
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    return to_png(fig)


def tag_heatmap(by_tag: Mapping[str, Mapping[str, float | None]], metrics: Sequence[str],
                title: str = "Per-tag means") -> bytes | None:
    """A tags × metrics grid of means, annotated; blank where undefined."""
    tags = list(by_tag)
    if not tags or not metrics:
        return None
    values = [[by_tag[t].get(m) for m in metrics] for t in tags]
    if not any(_finite(v) for row in values for v in row):
        return None
    grid = [[float(v) if _finite(v) else math.nan for v in row] for row in values]
    fig = Figure(figsize=(1.3 * len(metrics) + 2.5, 0.42 * len(tags) + 1.6))
    ax = fig.add_subplot()
    image = ax.imshow(grid, cmap="RdYlGn", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(metrics)), list(metrics), rotation=30, ha="right")
    ax.set_yticks(range(len(tags)), tags)
    for i, row in enumerate(values):
        for j, v in enumerate(row):
            ax.text(j, i, f"{v:.2f}" if _finite(v) else "–", ha="center", va="center",
                    fontsize=8)
    fig.colorbar(image, ax=ax, fraction=0.04)
    ax.set_title(title)
    return to_png(fig)
