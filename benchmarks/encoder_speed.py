"""Raw encoder speed: the torch MiniLM against MiniLM on ONNX Runtime (float and int8).

    .venv/bin/python -m benchmarks.encoder_speed \\
        --squad ../shared/datasets/squad_v11_train_11articles.json

Texts/s on SQuAD paragraphs (the passage role, what ingestion encodes) and questions (what a
query and the input guardrails encode), at 1 and 2 model threads; each path runs on the same
texts, round-robin, ``--rounds`` times, and the median counts (the machine is shared: a burst of
load hits every path alike). Beside the speed, how close each path's vectors are to the torch
MiniLM's (cosine) and whether a text's vector depends on the batch it is in. Retrieval quality
of the int8 encoder is measured by ``benchmarks.query_retrieval --encoders minilm,minilm-int8``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np


def sample_texts(squad: Path, paragraphs: int, questions: int) -> dict[str, list[str]]:
    data = json.loads(squad.read_text())
    paras = [p["context"] for a in data["data"] for p in a["paragraphs"]]
    qs = [q["question"] for a in data["data"] for p in a["paragraphs"] for q in p["qas"]]
    step_p, step_q = max(1, len(paras) // paragraphs), max(1, len(qs) // questions)
    return {"paragraphs": paras[::step_p][:paragraphs], "questions": qs[::step_q][:questions]}


def _paths(threads: int) -> dict[str, Any]:
    import torch

    from services.common.embeddings import MINILM, default_model_path, embedder_for
    from services.common.onnx_encoder import load_minilm

    torch.set_num_threads(threads)
    minilm = embedder_for(MINILM)
    minilm.warm_up()
    source = default_model_path(MINILM)
    return {
        "torch MiniLM (sentence-transformers)": minilm.encode_passages,
        "ONNX Runtime float32": load_minilm(source, quantized=False, threads=threads).encode,
        "ONNX Runtime int8 (minilm-int8)": load_minilm(source, quantized=True,
                                                       threads=threads).encode,
    }


def run(texts: dict[str, list[str]], threads: int, rounds: int) -> dict[str, Any]:
    paths = _paths(threads)
    out: dict[str, Any] = {}
    for kind, batch in texts.items():
        timings: dict[str, list[float]] = {name: [] for name in paths}
        cpu: dict[str, list[float]] = {name: [] for name in paths}
        vectors: dict[str, np.ndarray] = {}
        for encode in paths.values():
            encode(batch[:4])  # first-call costs out of the timing
        for _ in range(rounds):
            for name, encode in paths.items():
                started, cpu_started = time.perf_counter(), time.process_time()
                vectors[name] = np.asarray(encode(batch))
                timings[name].append(time.perf_counter() - started)
                cpu[name].append(time.process_time() - cpu_started)
        reference = vectors[next(iter(paths))]
        rows = {}
        base = statistics.median(timings[next(iter(paths))])
        base_cpu = statistics.median(cpu[next(iter(paths))])
        for name, encode in paths.items():
            seconds = statistics.median(timings[name])
            cpu_s = statistics.median(cpu[name])
            cos = (vectors[name] * reference).sum(axis=1)
            alone = np.stack([np.asarray(encode([t]))[0] for t in batch[:20]])
            rows[name] = {"texts_per_s": round(len(batch) / seconds, 1),
                          "speedup_vs_torch": round(base / seconds, 2),
                          # per CPU-second of the process (all its threads): the cost,
                          # whatever else the shared machine runs
                          "texts_per_cpu_s": round(len(batch) / cpu_s, 1),
                          "cpu_speedup_vs_torch": round(base_cpu / cpu_s, 2),
                          "cosine_to_torch_min": round(float(cos.min()), 4),
                          "cosine_to_torch_mean": round(float(cos.mean()), 4),
                          "batch_vs_alone_max_abs_diff": float(
                              np.abs(alone - vectors[name][:20]).max())}
        out[kind] = {"texts": len(batch), "paths": rows}
    return out


def machine_summary() -> dict[str, Any]:
    """Cores, load average and time at the end of a run: encoder timings swing with the load."""
    return {"cpus": os.cpu_count(), "load_average": [round(x, 2) for x in os.getloadavg()],
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--squad", type=Path, required=True)
    parser.add_argument("--paragraphs", type=int, default=200)
    parser.add_argument("--questions", type=int, default=600)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks"))
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    texts = sample_texts(args.squad, args.paragraphs, args.questions)
    results: dict[str, Any] = {"threads": {}}
    for threads in [int(t) for t in args.threads.split(",")]:
        results["threads"][str(threads)] = run(texts, threads, args.rounds)
    results["machine"] = machine_summary()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "encoder_speed.json").write_text(json.dumps(results, indent=1) + "\n")
    lines = ["| threads | texts | path | texts/s (wall) | × torch | texts per CPU-s | × torch "
             "| cosine to torch (min / mean) | batch vs alone max diff |",
             "|---|---|---|---|---|---|---|---|---|"]
    for threads, per_kind in results["threads"].items():
        for kind, block in per_kind.items():
            for name, row in block["paths"].items():
                lines.append(f"| {threads} | {kind} ({block['texts']}) | {name} "
                             f"| {row['texts_per_s']} | {row['speedup_vs_torch']} "
                             f"| {row['texts_per_cpu_s']} | {row['cpu_speedup_vs_torch']} "
                             f"| {row['cosine_to_torch_min']} / {row['cosine_to_torch_mean']} "
                             f"| {row['batch_vs_alone_max_abs_diff']:.1e} |")
    table = "\n".join([f"Load average at the end: {results['machine']['load_average']}", "",
                       *lines]) + "\n"
    (args.out / "encoder_speed_table.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
