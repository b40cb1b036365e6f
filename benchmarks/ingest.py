"""Ingestion benchmark on a real local stack (own ports and state, stopped at the end).

    .venv/bin/python -m benchmarks.ingest --squad ../shared/datasets/squad_v2_dev_5articles.json

Measures, each beside a baseline taken in the same run:
- throughput: pipeline chunks/s (publish → indexed, Kafka + ingest + embedder + Postgres)
  vs. the raw model's encode chunks/s on the same texts in this process;
- freshness: publish → queryable latency p50/p95 for ~5 KB documents, vs. the raw encode time
  of the same document;
- edit scenarios on a 100-chunk document: chunks re-embedded by the pipeline (content-defined
  chunking + embedding cache) vs. fixed 150-word windows counted from the document start.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from benchmarks.harness import configure_environment, running_stack


def squad_paragraphs(path: Path) -> list[str]:
    data = json.loads(path.read_text())
    return [p["context"] for article in data["data"] for p in article["paragraphs"]]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def fixed_windows(text: str, size: int = 150) -> set[str]:
    import hashlib

    words = text.split()
    return {hashlib.sha256(" ".join(words[i:i + size]).encode()).hexdigest()
            for i in range(0, len(words), size)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--squad", type=Path, required=True, help="SQuAD JSON (paragraphs)")
    parser.add_argument("--docs", type=int, default=120, help="documents in the throughput run")
    parser.add_argument("--freshness-samples", type=int, default=30)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    state = configure_environment()
    paragraphs = squad_paragraphs(args.squad)
    with running_stack(state, {"ingest": 1, "embedder": 1}):
        from benchmarks.ingest_runs import edit_scenarios, freshness, throughput

        results = {
            "throughput": throughput(paragraphs, args.docs),
            "freshness": freshness(paragraphs, args.freshness_samples),
            "edits": edit_scenarios(paragraphs),
            "machine": _machine(),
        }
    report(results, args.out)


def _machine() -> dict[str, object]:
    import os
    import platform

    return {"cpus": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(), "at": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                               time.gmtime())}


def report(results: dict, out: Path) -> None:
    from benchmarks.ingest_report import write_chart

    out.mkdir(parents=True, exist_ok=True)
    (out / "ingest.json").write_text(json.dumps(results, indent=2))
    chart = write_chart(results, out / "ingest.png")
    t, f = results["throughput"], results["freshness"]
    print("\n== ingestion benchmark ==")
    print(f"throughput: pipeline {t['pipeline_chunks_per_s']:.1f} chunks/s "
          f"vs raw model encode {t['raw_chunks_per_s']:.1f} chunks/s "
          f"({t['chunks']} chunks, {t['docs']} docs; pipeline/raw = "
          f"{t['pipeline_chunks_per_s'] / t['raw_chunks_per_s']:.2f})")
    print(f"freshness (~{f['doc_bytes']} B doc, n={f['samples']}): p50 {f['p50_ms']:.0f} ms, "
          f"p95 {f['p95_ms']:.0f} ms; raw encode of the same doc p50 {f['raw_p50_ms']:.0f} ms")
    print(f"{'edit scenario':34} {'pipeline re-embedded':>22} {'fixed windows':>14}")
    for name, row in results["edits"].items():
        print(f"{name:34} {row['pipeline']:>22} {row['fixed_windows']:>14}")
    print(f"results: {out / 'ingest.json'}; chart: {chart}")


if __name__ == "__main__":
    main()
