"""The ingestion benchmark's chart: throughput, freshness distribution, re-embedding per edit."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def write_chart(results: dict, path: Path) -> Path:
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(16, 4.8))
    t = results["throughput"]
    ax1.bar(["raw model encode", "pipeline (Kafka→PG)"],
            [t["raw_chunks_per_s"], t["pipeline_chunks_per_s"]], color=["#999", "#2a7ab9"])
    ax1.set_ylabel("chunks / s")
    ax1.set_title(f"Throughput ({t['chunks']} chunks)")
    f = results["freshness"]
    ax2.hist(f["latencies_ms"], bins=15, color="#2a7ab9")
    for q, style in (("p50_ms", "--"), ("p95_ms", ":")):
        ax2.axvline(f[q], color="k", linestyle=style, label=f"{q[:3]} {f[q]:.0f} ms")
    ax2.axvline(f["raw_p50_ms"], color="#999", label=f"raw encode p50 {f['raw_p50_ms']:.0f} ms")
    ax2.set_xlabel("publish → queryable (ms)")
    ax2.set_title(f"Freshness, ~{f['doc_bytes'] // 1000} KB documents")
    ax2.legend()
    names = list(results["edits"])
    xs = range(len(names))
    ax3.barh([x + 0.2 for x in xs], [results["edits"][n]["fixed_windows"] for n in names],
             height=0.4, color="#999", label="fixed 150-word windows")
    ax3.barh([x - 0.2 for x in xs], [results["edits"][n]["pipeline"] for n in names],
             height=0.4, color="#2a7ab9", label="customllm (content-defined + cache)")
    ax3.set_yticks(list(xs), names)
    ax3.set_xlabel("chunks re-embedded (100-chunk document)")
    ax3.set_title("Re-embedding after an edit")
    ax3.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
