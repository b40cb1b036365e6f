"""A run's summary: every metric's mean with a bootstrap CI, per-tag means, latency percentiles,
token and cost totals, counts, and the worst cases for the reports."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from services.common.evaluation.bootstrap import bootstrap_ci
from services.common.evaluation.metrics import METRIC_KEYS
from services.common.evaluation.models import CaseResult

__all__ = ["HEADLINE_METRICS", "percentile", "summarize", "worst_cases"]

HEADLINE_METRICS: tuple[str, ...] = ("f1", "exact_match", "hit@5", "faithfulness",
                                     "abstention_correct")
"""The metrics shown first in reports, broken down per tag, and compared by default."""


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100) with numpy's linear interpolation; ``None`` if empty."""
    data = [float(v) for v in values if v is not None and math.isfinite(v)]
    return float(np.percentile(data, q)) if data else None


def _mean(values: list[float | None]) -> float | None:
    data = [v for v in values if v is not None and math.isfinite(v)]
    return float(sum(data) / len(data)) if data else None


def _metric_names(per_case: Sequence[dict[str, float | None]]) -> list[str]:
    if not per_case:
        return list(METRIC_KEYS)
    seen: dict[str, None] = {}
    for row in per_case:
        seen.update(dict.fromkeys(row))
    order = {k: i for i, k in enumerate(METRIC_KEYS)}
    return sorted(seen, key=lambda k: (order.get(k, len(order)), list(seen).index(k)))


def summarize(per_case: Sequence[dict[str, float | None]], results: Sequence[CaseResult],
              n_boot: int = 1000, seed: int = 0, alpha: float = 0.05) -> dict[str, Any]:
    """Summarize a run. ``per_case[i]`` holds the :func:`metrics.score_case` scores of
    ``results[i]``.

    Returns a JSON-ready dict (no NaN anywhere; ``None`` where undefined):

    * ``metrics``: ``{name: {"mean", "lo", "hi", "n"}}`` for every metric key, with ``n`` the
      number of cases where it is defined and ``[lo, hi]`` the ``1 - alpha`` percentile
      bootstrap interval (:func:`bootstrap.bootstrap_ci`, ``n_boot`` resamples, ``seed``);
    * ``by_tag``: ``{tag: {metric: mean}}`` for :data:`HEADLINE_METRICS`, and ``tag_counts``;
    * ``latency``: ``{stage: {"p50", "p95", "mean", "n"}}`` in ms over the cases that did not
      error (errors are counted separately and gated by the ``error`` metric);
    * ``tokens``: ``{"prompt_tokens" | "completion_tokens" | "total_tokens": {"total", "p50"}}``;
    * ``cost_usd``: the run's total cost;
    * ``counts``: ``cases``, ``errors``, ``abstained`` (flagged by the runner or refused by the
      guardrails), ``refused``, ``cached``, ``expected_answer``, ``expected_refuse``;
    * ``bootstrap``: the resampling parameters, so the intervals can be reproduced.
    """
    if len(per_case) != len(results):
        raise ValueError(f"{len(per_case)} score rows for {len(results)} results")
    metrics = {}
    for name in _metric_names(per_case):
        values = [row.get(name) for row in per_case]
        mean, lo, hi = bootstrap_ci(values, n_boot=n_boot, alpha=alpha, seed=seed)
        n = sum(1 for v in values if v is not None and math.isfinite(v))
        metrics[name] = {"mean": mean, "lo": lo, "hi": hi, "n": n}

    tags = sorted({t for r in results for t in r.tags})
    by_tag: dict[str, dict[str, float | None]] = {}
    tag_counts: dict[str, int] = {}
    for tag in tags:
        rows = [row for row, r in zip(per_case, results, strict=True) if tag in r.tags]
        tag_counts[tag] = len(rows)
        by_tag[tag] = {m: _mean([row.get(m) for row in rows]) for m in HEADLINE_METRICS}

    stages: dict[str, list[float]] = {}
    for r in results:
        if r.status == "error" or r.error:
            continue
        for stage, ms in r.latency_ms.items():
            if ms is not None and math.isfinite(ms):
                stages.setdefault(stage, []).append(float(ms))
    ordered = sorted(stages, key=lambda s: (s == "total", list(stages).index(s)))
    latency = {s: {"p50": percentile(stages[s], 50), "p95": percentile(stages[s], 95),
                   "mean": _mean(stages[s]), "n": len(stages[s])} for s in ordered}

    prompt = [r.usage.prompt_tokens for r in results]
    completion = [r.usage.completion_tokens for r in results]
    tokens = {
        name: {"total": int(sum(values)), "p50": percentile(values, 50)}
        for name, values in (("prompt_tokens", prompt), ("completion_tokens", completion),
                             ("total_tokens", [p + c for p, c in zip(prompt, completion,
                                                                        strict=True)]))
    }
    counts = {
        "cases": len(results),
        "errors": sum(1 for r in results if r.status == "error" or r.error),
        "abstained": sum(1 for r in results if r.abstained or r.status == "refused"),
        "refused": sum(1 for r in results if r.status == "refused"),
        "cached": sum(1 for r in results if r.cached),
        "expected_answer": sum(1 for r in results if r.expected == "answer"),
        "expected_refuse": sum(1 for r in results if r.expected == "refuse"),
    }
    return {
        "metrics": metrics,
        "by_tag": by_tag,
        "tag_counts": tag_counts,
        "latency": latency,
        "tokens": tokens,
        "cost_usd": float(sum(r.usage.cost_usd for r in results)),
        "counts": counts,
        "bootstrap": {"method": "percentile", "n_boot": n_boot, "alpha": alpha, "seed": seed},
    }


def worst_cases(results: Sequence[CaseResult], per_case: Sequence[dict[str, float | None]],
                n: int = 5) -> list[dict[str, Any]]:
    """The ``n`` cases that went most wrong, worst first, as
    ``{"index", "case_id", "badness", "reasons"}`` (``index`` into ``results``).

    badness = the largest of: 1 for an error, a wrong abstention (answered a case to refuse),
    a false abstention or a PII leak; 1 - F1; 1 - faithfulness; 0.5 when no gold document was
    retrieved (reciprocal rank 0). Cases with badness 0 are left out. Ties: the hard failures
    (error, wrong or false abstention, PII leak) first, then lower F1, then case id.
    """
    ranked = []
    for index, (r, row) in enumerate(zip(results, per_case, strict=True)):
        checks = (
            (row.get("error") == 1.0, f"error: {r.error or 'failed'}", 1.0),
            (row.get("abstention_correct") == 0.0, "answered a question it should refuse", 1.0),
            (row.get("false_abstention") == 1.0, "abstained on an answerable question", 1.0),
            (row.get("pii_leak") == 1.0, "PII in the answer that the context does not hold", 1.0),
            (row.get("mrr") == 0.0, "no gold document retrieved", 0.5),
        )
        reasons = [reason for hit, reason, _ in checks if hit]
        parts = [0.0, *(weight for hit, _, weight in checks if hit)]
        f1, faith = row.get("f1"), row.get("faithfulness")
        if f1 is not None and f1 < 1.0:
            reasons.append(f"F1 {f1:.2f}")
            parts.append(1.0 - f1)
        if faith is not None and faith < 1.0:
            reasons.append(f"faithfulness {faith:.2f}")
            parts.append(1.0 - faith)
        badness = max(parts)
        if badness > 0:
            hard = any(hit and weight == 1.0 for hit, _, weight in checks)
            ranked.append({"index": index, "case_id": r.case_id, "badness": badness,
                           "reasons": reasons,
                           "_key": (-badness, not hard, 1.0 if f1 is None else f1, r.case_id)})
    ranked.sort(key=lambda c: c["_key"])
    return [{k: v for k, v in c.items() if k != "_key"} for c in ranked[:max(0, n)]]
