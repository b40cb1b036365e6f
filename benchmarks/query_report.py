"""The query benchmark's chart: median latency per stage, end-to-end distributions, cache."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

SEGMENTS = (("embed", "#7fb3d5"), ("cache_lookup", "#a9dfbf"), ("retrieval", "#f0b27a"),
            ("generation", "#2a7ab9"), ("other in rag", "#d7bde2"),
            ("transport (Kafka, guardrails)", "#999"))


def _median_segments(summary: dict[str, Any]) -> dict[str, float]:
    """Median of each stage; 'other in rag' = median total − the stage medians (≥ 0);
    transport = median of e2e − total per request."""
    stages = {k: v["p50"] for k, v in summary["stages_ms"].items()}
    named = {name: stages.get(name, 0.0) for name, _ in SEGMENTS[:4]}
    named["other in rag"] = max(0.0, stages.get("total", 0.0) - sum(named.values()))
    named["transport (Kafka, guardrails)"] = summary["transport_ms"]["p50"] or 0.0
    return named


def _ok(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r["status"] == "ok"]


def write_chart(results: dict[str, Any], path: Path) -> Path:
    s, records = results["summary"], results["records"]
    fig, ((ax1, ax4), (ax2, ax3)) = plt.subplots(2, 2, figsize=(15, 10))

    hits = [r for r in _ok(records["cache_fill"] + records["cache_repeat"]) if r["cached"]]
    bars = {"answerable\n+ generation": s["generation"],
            "unanswerable\n+ generation": s["unanswerable"],
            "retrieval\nonly": s["retrieval_only"]}
    if hits:
        bars["cache hit"] = {"stages_ms": results["cache"]["hit_stages_ms"],
                             "transport_ms": {"p50": _median(
                                 [r["e2e_ms"] - r["latency_ms"]["total"] for r in hits])}}
    labels = list(bars)
    bottoms = [0.0] * len(labels)
    segments = [_median_segments(bars[label]) for label in labels]
    for name, color in SEGMENTS:
        heights = [seg[name] for seg in segments]
        ax1.bar(labels, heights, bottom=bottoms, color=color, label=name)
        bottoms = [b + h for b, h in zip(bottoms, heights, strict=True)]
    for x, total in enumerate(bottoms):
        ax1.text(x, total, f"{total:.0f} ms", ha="center", va="bottom", fontsize=8)
    ax1.set_ylabel("median latency (ms)")
    ax1.set_title("Median latency per stage (stacked)")
    ax1.legend(fontsize=8)

    # The same bars without generation: where the rest of the time goes.
    bottoms = [0.0] * len(labels)
    for name, color in SEGMENTS:
        if name == "generation":
            continue
        heights = [seg[name] for seg in segments]
        ax4.bar(labels, heights, bottom=bottoms, color=color, label=name)
        bottoms = [b + h for b, h in zip(bottoms, heights, strict=True)]
    for x, total in enumerate(bottoms):
        ax4.text(x, total, f"{total:.0f} ms", ha="center", va="bottom", fontsize=8)
    ax4.set_ylabel("median latency (ms)")
    ax4.set_title("Median latency per stage, generation left out (the path's overhead)")
    ax4.legend(fontsize=8)

    groups = {"answerable\n+ gen": _ok(records["generation"]),
              "unanswerable\n+ gen": _ok(records["unanswerable"]),
              "retrieval\nonly": _ok(records["retrieval_only"]),
              "cache\nmiss": [r for r in _ok(records["cache_fill"] + records["cache_repeat"])
                              if not r["cached"]],
              "cache\nhit": hits}
    groups = {k: v for k, v in groups.items() if v}
    ax2.boxplot([[r["e2e_ms"] for r in v] for v in groups.values()], showfliers=True)
    ax2.set_xticks(range(1, len(groups) + 1), list(groups), fontsize=8)
    ax2.set_yscale("log")
    ax2.set_ylabel("client end-to-end (ms, log)")
    ax2.set_title("End-to-end latency through Kafka request/reply")

    cache = results["cache"]
    names = ["no cache\n(baseline)", "cache miss", "cache hit"]
    dists = [cache["no_cache_e2e_ms"], cache["miss_e2e_ms"], cache["hit_e2e_ms"]]
    xs = range(len(names))
    ax3.bar([x - 0.2 for x in xs], [d["p50"] or 0 for d in dists], 0.4, color="#2a7ab9",
            label="p50")
    ax3.bar([x + 0.2 for x in xs], [d["p95"] or 0 for d in dists], 0.4, color="#999",
            label="p95")
    for x, d in zip(xs, dists, strict=True):
        if d["p50"]:
            ax3.text(x - 0.2, d["p50"], f"{d['p50']:.0f}", ha="center", va="bottom", fontsize=8)
    ax3.set_xticks(list(xs), names)
    ax3.set_yscale("log")
    ax3.set_ylabel("client end-to-end (ms, log)")
    ax3.set_title(f"Answer cache (repeat-pass hit rate {cache['repeat_pass_hit_rate']:.0%})")
    ax3.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2] if ordered else 0.0
