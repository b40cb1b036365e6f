"""Printing and plotting the retrieval benchmark's results (``benchmarks.query_retrieval``).

Every platform mode is printed beside its naive counterpart (hybrid ↔ cosine+BM25 RRF, lexical
↔ rank-bm25, vector and exact ↔ exact cosine) with the difference, so a regression against the
baseline is visible on the line where it happens.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

METRICS = ("hit@1", "hit@5", "hit@10", "mrr@10")
COUNTERPART = {"hybrid": "naive_rrf", "hybrid_guarded": "naive_rrf", "lexical": "bm25",
               "vector": "cosine", "exact": "cosine"}


def _pairs(modes: dict[str, Any]) -> list[tuple[str, str]]:
    """(platform mode, naive counterpart) for every platform mode present, in the canonical
    order; ``hybrid@e5`` (another encoder) pairs like ``hybrid``."""
    found = []
    for base, naive in COUNTERPART.items():
        found += [(mode, naive) for mode in modes
                  if mode == base or mode.startswith(base + "@")]
    return found


def report(results: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "query_retrieval.json").write_text(json.dumps(results, indent=2, ensure_ascii=False))
    chart = write_chart(results, out / "query_retrieval.png")
    if any("@" in mode for d in results["datasets"] for found in d["parts"].values()
           for mode in found["modes"]):
        write_encoder_chart(results, out / "query_retrieval_encoders.png")
    (out / "query_retrieval.md").write_text(markdown(results), encoding="utf-8")
    print("\n== retrieval benchmark (top 10 passages; hit = the gold paragraph in the first k) ==")
    for dataset in results["datasets"]:
        print(f"\n{dataset['name']}: {dataset['description']} "
              f"({dataset['paragraphs']} paragraphs, {dataset['chunks']} chunks)")
        for part, found in dataset["parts"].items():
            print(f"  part {part}: {found['questions']} questions")
            print("  " + format_table(found["modes"]).replace("\n", "\n  "))
    if "speed" in results:
        print_speed(results["speed"])
    print(f"\nwall time {results['wall_s']} s; results: {out / 'query_retrieval.json'}; "
          f"chart: {chart}")


def format_table(modes: dict[str, dict[str, float]]) -> str:
    """One line per platform mode and one per naive mode under it, deltas on the platform line."""
    head = f"{'mode':24}" + "".join(f"{m:>8}" for m in METRICS) + f"{'p50 ms':>9}  vs naive"
    lines = [head]
    for mode, naive in _pairs(modes):
        m, b = modes[mode], modes[naive]
        deltas = " ".join(f"{m[k] - b[k]:+.3f}" for k in METRICS)
        lines.append(f"{mode:24}" + "".join(f"{m[k]:>8.3f}" for k in METRICS)
                     + f"{m.get('p50_ms', 0.0):>9.1f}  {deltas}")
        lines.append(f"{'  naive ' + naive:24}" + "".join(f"{b[k]:>8.3f}" for k in METRICS))
    return "\n".join(lines)


def markdown(results: dict[str, Any]) -> str:
    """The quality tables as Markdown (one per data set part), each platform mode with its
    naive counterpart under it, for the README and docs/benchmarks/query_retrieval.md."""
    lines = [f"Command: `{results['command']}`", ""]
    for dataset in results["datasets"]:
        for part, found in dataset["parts"].items():
            lines += [f"**{dataset['name']} / {part}**: {found['questions']} questions, "
                      f"{dataset['paragraphs']} paragraphs ({dataset['chunks']} chunks)", "",
                      "| mode | hit@1 | hit@5 | hit@10 | MRR@10 | p50 ms |",
                      "|---|---|---|---|---|---|"]
            for mode, naive in _pairs(found["modes"]):
                m, b = found["modes"][mode], found["modes"][naive]
                lines.append(f"| {mode} | " + " | ".join(
                    f"{m[k]:.3f} ({m[k] - b[k]:+.3f})" for k in METRICS)
                    + f" | {m.get('p50_ms', 0.0):.1f} |")
                lines.append(f"| ↳ naive {naive} | " + " | ".join(f"{b[k]:.3f}" for k in METRICS)
                             + " | |")
            lines.append("")
    return "\n".join(lines)


def print_speed(s: dict[str, Any]) -> None:
    print(f"\nPart B: synthetic 384-d, {s['clusters']} clusters, {s['queries']} queries, "
          f"top {s['top_k']}; {s['index']}")
    print(f"{'chunks':>8} {'build s':>8} {'scope':>10} {'HNSW p50':>9} {'p95':>7} "
          f"{'exact p50':>10} {'p95':>7} {'recall@10':>10}")
    for stage in s["stages"]:
        for name, m in stage["scopes"].items():
            print(f"{stage['chunks']:>8} {stage['hnsw_build_s']:>8.1f} {name:>10} "
                  f"{m['hnsw']['p50_ms']:>9.1f} {m['hnsw']['p95_ms']:>7.1f} "
                  f"{m['exact']['p50_ms']:>10.1f} {m['exact']['p95_ms']:>7.1f} "
                  f"{m['recall_at_10']:>10.3f}")


def write_chart(results: dict[str, Any], path: Path) -> Path:
    """One panel per (data set, part): platform mode bars beside their naive counterparts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(d["name"], part, found["modes"]) for d in results["datasets"]
              for part, found in d["parts"].items()]
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.8), squeeze=False)
    pairs = [(m, n) for m, n in COUNTERPART.items() if m not in ("exact", "hybrid_guarded")]
    colors = {"hybrid": "#2a7ab9", "lexical": "#e67e22", "vector": "#27ae60"}
    metrics = ("hit@1", "hit@5", "mrr@10")
    width = 0.8 / (2 * len(pairs))
    for ax, (name, part, modes) in zip(axes[0], panels, strict=True):
        for i, (mode, naive) in enumerate(pairs):
            if mode not in modes:
                continue
            for j, (key, hatch, alpha) in enumerate(((mode, "", 1.0), (naive, "//", 0.45))):
                xs = [x + (2 * i + j) * width for x in range(len(metrics))]
                ax.bar(xs, [modes[key][k] for k in metrics], width=width, color=colors[mode],
                       alpha=alpha, hatch=hatch, edgecolor="white",
                       label=f"{mode}" if j == 0 else f"naive {naive}")
        ax.set_xticks([x + width * (2 * len(pairs) - 1) / 2 for x in range(len(metrics))],
                      metrics)
        ax.set_ylim(0.4, 1.02)
        ax.set_title(f"{name}\n{part}", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].legend(fontsize=7, ncol=3, loc="lower left")
    fig.suptitle("Retrieval quality, top 10: platform (solid) vs naive baseline (hatched)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_encoder_chart(results: dict[str, Any], path: Path) -> Path:
    """One panel per (data set, part): naive RRF, hybrid with the active encoder and hybrid with
    each other encoder (``hybrid@NAME``), on hit@1 / hit@5 / MRR@10."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(d["name"], part, found["modes"]) for d in results["datasets"]
              for part, found in d["parts"].items()]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4.4), squeeze=False)
    metrics = ("hit@1", "hit@5", "mrr@10")
    for ax, (name, part, modes) in zip(axes[0], panels, strict=True):
        series = [("naive_rrf", "naive MiniLM cosine + rank-bm25 (RRF)", "#999999")]
        series.append(("hybrid", "hybrid, MiniLM", "#2a7ab9"))
        series += [(m, f"hybrid, {m.split('@', 1)[1]}", "#c0392b") for m in modes
                   if m.startswith("hybrid@")]
        width = 0.8 / len(series)
        for i, (key, label, color) in enumerate(series):
            xs = [x + i * width for x in range(len(metrics))]
            values = [modes[key][k] for k in metrics]
            ax.bar(xs, values, width=width, color=color, label=label)
            for x, v in zip(xs, values, strict=True):
                ax.text(x, v + 0.004, f"{v:.3f}", ha="center", fontsize=6, rotation=90)
        ax.set_xticks([x + width * (len(series) - 1) / 2 for x in range(len(metrics))], metrics)
        ax.set_ylim(0.5, 1.06)
        ax.set_title(f"{name}\n{part}", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].legend(fontsize=7, loc="lower left")
    fig.suptitle("Retrieval by encoder, top 10 (same run, same questions)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
