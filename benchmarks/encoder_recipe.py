"""The int8 MiniLM artifact this code builds against an earlier one, same texts, same run.

    .venv/bin/python -m benchmarks.encoder_recipe \\
        --squad ../shared/datasets/squad_v11_train_11articles.json \\
        --baseline ~/.cache/customllm/onnx/minilm-int8-611da7032ae8ead4.onnx

Why: a change of the quantization recipe (``onnx_encoder.RECIPE``) builds a new file, and the
question is whether it is faster at the call sizes the platform makes (a screened question's
views one call at a time, a paragraph alone, bulk ingestion) and whether its vectors are those
of the earlier file. The baseline is a file an earlier release built (``--baseline``; a
``git worktree`` of that release builds one on its first encode). Both run on one model thread,
interleaved call by call so a burst of load on a shared machine hits both alike; CPU time per
call, median over ``--rounds`` rounds.
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

from benchmarks.encoder_speed import machine_summary, sample_texts

OUT = Path("docs/benchmarks/encoder_recipe.json")


def timed_calls(encoders: dict[str, Any], calls: list[list[str]], rounds: int
                ) -> dict[str, float]:
    """Median CPU ms per call of each encoder over ``calls`` (one call per list)."""
    spent: dict[str, list[float]] = {name: [] for name in encoders}
    for _ in range(rounds):
        for batch in calls:
            for name, encoder in encoders.items():
                started = time.process_time()
                encoder.encode(batch)
                spent[name].append((time.process_time() - started) * 1000)
    return {name: round(statistics.median(ms), 3) for name, ms in spent.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--squad", type=Path, required=True)
    parser.add_argument("--baseline", type=Path, required=True,
                        help="an int8 MiniLM .onnx an earlier release built")
    parser.add_argument("--paragraphs", type=int, default=120)
    parser.add_argument("--questions", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from services.common.embeddings import MINILM, default_model_path
    from services.common.onnx_encoder import OnnxSentenceEncoder, ensure_artifact

    source = default_model_path(MINILM)
    current = ensure_artifact(source, quantized=True)
    encoders = {name: OnnxSentenceEncoder(path, source / "tokenizer.json", threads=1)
                for name, path in (("baseline", args.baseline.expanduser()),
                                   ("current", current))}
    texts = sample_texts(args.squad, args.paragraphs, args.questions)
    for encoder in encoders.values():
        encoder.encode(texts["questions"][:4])
    shapes = {"a question alone": [[q] for q in texts["questions"]],
              "a paragraph alone": [[p] for p in texts["paragraphs"]],
              "every paragraph in one call list": [texts["paragraphs"]]}
    results: dict[str, Any] = {"baseline": str(args.baseline), "current": current.name}
    for shape, calls in shapes.items():
        ms = timed_calls(encoders, calls, args.rounds)
        results[shape] = {**ms, "current_vs_baseline": round(ms["current"] / ms["baseline"], 3)}
        print(f"{shape}: baseline {ms['baseline']:.2f} ms, current {ms['current']:.2f} ms "
              f"({results[shape]['current_vs_baseline']:.3f}×)")
    every = texts["paragraphs"] + texts["questions"]
    baseline, now = (encoders[n].encode(every) for n in ("baseline", "current"))
    results["vectors"] = {"texts": len(every), "identical": bool(np.array_equal(baseline, now)),
                          "max_abs_diff": float(np.abs(baseline - now).max())}
    results["machine"] = machine_summary()
    print(json.dumps(results["vectors"]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
