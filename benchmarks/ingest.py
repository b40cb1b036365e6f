"""Ingestion benchmark on a real local stack (own ports and state, stopped at the end).

    .venv/bin/python -m benchmarks.ingest --squad ../shared/datasets/squad_v2_dev_5articles.json

Measures, each beside a baseline taken in the same run:
- throughput: pipeline chunks/s (publish → indexed, Kafka + ingest + embedder + Postgres)
  vs. the raw model's encode chunks/s on the same texts in this process (measured before and
  after the pipeline run, the mean counts: the machine is shared); ``--model`` picks the
  encoder the stack and the raw baseline use, ``--reference`` adds other encoders' raw speed on
  the same texts (e.g. the torch MiniLM beside MiniLM int8);
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
    parser.add_argument("--model", default=None,
                        help="embedding model of the stack and the raw baseline (id or alias, "
                             "e.g. minilm-int8; default: the configured one)")
    parser.add_argument("--reference", default="",
                        help="more encoders whose raw speed is measured on the same texts, "
                             "comma-separated (e.g. minilm)")
    parser.add_argument("--ports", default="",
                        help="KAFKA,CONTROLLER,POSTGRES ports of the private stack (default: "
                             "the harness's)")
    parser.add_argument("--throughput-only", action="store_true",
                        help="skip the freshness and edit scenarios")
    args = parser.parse_args()
    if args.ports:
        from benchmarks import harness

        kafka, controller, pg = args.ports.split(",")
        harness.PORTS.update({"CUSTOMLLM_KAFKA_PORT": kafka,
                              "CUSTOMLLM_KAFKA_CONTROLLER_PORT": controller,
                              "CUSTOMLLM_POSTGRES_PORT": pg})
    if args.model:
        import os

        from services.common.embeddings import canonical_model_id

        os.environ["CUSTOMLLM_EMBEDDING_MODEL_ID"] = canonical_model_id(args.model)
    state = configure_environment()
    paragraphs = squad_paragraphs(args.squad)
    references = [r.strip() for r in args.reference.split(",") if r.strip()]
    with running_stack(state, {"ingest": 1, "embedder": 1}):
        from benchmarks.ingest_runs import edit_scenarios, freshness, throughput

        results = {"throughput": throughput(paragraphs, args.docs, references)}
        if not args.throughput_only:
            results["freshness"] = freshness(paragraphs, args.freshness_samples)
            results["edits"] = edit_scenarios(paragraphs)
        results["machine"] = _machine()
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
    t = results["throughput"]
    print("\n== ingestion benchmark ==")
    print(f"throughput ({t['model_id']}): pipeline {t['pipeline_chunks_per_s']:.1f} chunks/s "
          f"vs raw model encode {t['raw_chunks_per_s']:.1f} chunks/s "
          f"({t['chunks']} chunks, {t['docs']} docs; pipeline/raw = "
          f"{t['pipeline_chunks_per_s'] / t['raw_chunks_per_s']:.2f})")
    if t.get("cpu_ratio"):
        print(f"  CPU-seconds: raw encode {t['raw_cpu_s']:.1f}, whole stack during the pipeline "
              f"{t['stack_cpu_s']:.1f} (raw/stack = {t['cpu_ratio']:.2f}); by process: "
              f"{t['stack_cpu_by_process_s']}")
    for name, speed in t.get("reference_chunks_per_s", {}).items():
        print(f"  raw encode of the same texts with {name}: {speed:.1f} chunks/s")
    if "freshness" not in results:
        print(f"results: {out / 'ingest.json'}")
        return
    chart = write_chart(results, out / "ingest.png")
    f = results["freshness"]
    print(f"freshness (~{f['doc_bytes']} B doc, n={f['samples']}): p50 {f['p50_ms']:.0f} ms, "
          f"p95 {f['p95_ms']:.0f} ms; raw encode of the same doc p50 {f['raw_p50_ms']:.0f} ms")
    print(f"{'edit scenario':34} {'pipeline re-embedded':>22} {'fixed windows':>14}")
    for name, row in results["edits"].items():
        print(f"{name:34} {row['pipeline']:>22} {row['fixed_windows']:>14}")
    print(f"results: {out / 'ingest.json'}; chart: {chart}")


if __name__ == "__main__":
    main()
