"""How the int8 encoder's calls are cut and run: padded tokens per call, threads per call.

    .venv/bin/python -m benchmarks.encoder_batching \\
        --squad ../shared/datasets/squad_v11_train_11articles.json

The same MiniLM int8 model, the same texts, only the calls differ: the former setting (calls
of up to 8,192 padded tokens, each on 2 ONNX Runtime threads, one at a time) beside calls of
one thread, with smaller token budgets, run one or two at a time. SQuAD paragraphs stand for
ingest chunks (the passage role), questions for queries and input screening. Round-robin over
``--rounds``, the median counts; wall seconds and CPU-seconds of the process (all threads).
Vectors are compared with the first configuration's: a text's vector must not depend on how
its calls were cut (per-row activation scales, see ``services/common/onnx_encoder.py``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.encoder_speed import machine_summary, sample_texts

# (label, padded tokens per call, calls at once, ONNX Runtime threads per call)
CONFIGS = [
    ("former: 8,192 tokens, 2 intra-op threads", 8192, 1, 2),
    ("8,192 tokens, 1 thread", 8192, 1, 1),
    ("2,048 tokens, 1 thread", 2048, 1, 1),
    ("512 tokens, 1 thread", 512, 1, 1),
    ("256 tokens, 1 thread", 256, 1, 1),
    ("8,192 tokens, 2 one-thread calls at once", 8192, 2, 1),
    ("512 tokens, 2 one-thread calls at once (default)", 512, 2, 1),
]


def _encoders() -> dict[str, Any]:
    from services.common.embeddings import MINILM, default_model_path
    from services.common.onnx_encoder import OnnxSentenceEncoder, ensure_artifact

    source = default_model_path(MINILM)
    model, tokenizer = ensure_artifact(source, True), source / "tokenizer.json"
    return {label: OnnxSentenceEncoder(model, tokenizer, threads=calls, batch_tokens=tokens,
                                       intra_op_threads=intra)
            for label, tokens, calls, intra in CONFIGS}


def run(texts: dict[str, list[str]], rounds: int) -> dict[str, Any]:
    encoders = _encoders()
    out: dict[str, Any] = {}
    for kind, batch in texts.items():
        wall: dict[str, list[float]] = {label: [] for label in encoders}
        cpu: dict[str, list[float]] = {label: [] for label in encoders}
        vectors: dict[str, np.ndarray] = {}
        for encoder in encoders.values():
            encoder.encode(batch[:4])  # warm
        for _ in range(rounds):
            for label, encoder in encoders.items():
                started, cpu_started = time.perf_counter(), time.process_time()
                vectors[label] = encoder.encode(batch)
                wall[label].append(time.perf_counter() - started)
                cpu[label].append(time.process_time() - cpu_started)
        first = vectors[CONFIGS[0][0]]
        base_wall = statistics.median(wall[CONFIGS[0][0]])
        out[kind] = {"texts": len(batch), "configs": {label: {
            "wall_s": round(statistics.median(wall[label]), 3),
            "cpu_s": round(statistics.median(cpu[label]), 3),
            "texts_per_s": round(len(batch) / statistics.median(wall[label]), 1),
            "speedup_vs_former": round(base_wall / statistics.median(wall[label]), 2),
            "max_abs_diff_vs_former": float(np.abs(vectors[label] - first).max()),
        } for label in encoders}}
    return out


def write_chart(results: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = [k for k in results if k != "machine"]
    fig, axes = plt.subplots(1, len(kinds), figsize=(7 * len(kinds), 4.2))
    for ax, kind in zip(np.atleast_1d(axes), kinds, strict=True):
        rows = results[kind]["configs"]
        labels = list(rows)
        ys = range(len(labels))
        ax.barh([y + 0.2 for y in ys], [rows[x]["wall_s"] for x in labels], height=0.4,
                color="#2a7ab9", label="wall s")
        ax.barh([y - 0.2 for y in ys], [rows[x]["cpu_s"] for x in labels], height=0.4,
                color="#999", label="CPU-s")
        ax.set_yticks(list(ys), labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_title(f"{kind} ({results[kind]['texts']} texts), MiniLM int8")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--squad", type=Path, required=True)
    parser.add_argument("--paragraphs", type=int, default=300)
    parser.add_argument("--questions", type=int, default=1500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks"))
    args = parser.parse_args()
    results = run(sample_texts(args.squad, args.paragraphs, args.questions), args.rounds)
    results["machine"] = machine_summary()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "encoder_batching.json").write_text(json.dumps(results, indent=1) + "\n")
    lines = ["| texts | calls | wall s | CPU-s | texts/s | × former (wall) | max abs diff |",
             "|---|---|---|---|---|---|---|"]
    for kind in (k for k in results if k != "machine"):
        for label, row in results[kind]["configs"].items():
            lines.append(f"| {kind} ({results[kind]['texts']}) | {label} | {row['wall_s']} "
                         f"| {row['cpu_s']} | {row['texts_per_s']} | {row['speedup_vs_former']} "
                         f"| {row['max_abs_diff_vs_former']:.1e} |")
    chart = write_chart(results, args.out / "encoder_batching.png")
    print(f"load average at the end: {results['machine']['load_average']}\n")
    print("\n".join(lines))
    print(f"\nresults: {args.out / 'encoder_batching.json'}; chart: {chart}")


if __name__ == "__main__":
    main()
