"""Tune the hybrid fusion weights on the tune part of data set 1, and only there.

Why a script: the default weights in ``services/rag/fusion.py`` must be reproducible from data
that no reported figure comes from. This reads the tune articles' questions only (the held-out
articles and data set 2 are never loaded as questions), fetches each question's hybrid pool
once with its signals (``retrieval.hybrid_pool``), then scores every weight setting of a grid
on those stored pools. It prints the best settings, where the defaults stand, and how flat the
top is: pick from the middle of a flat top, not its best point. Report the result with
``benchmarks.query_retrieval`` on the held-out part afterwards.

    .venv/bin/python -m benchmarks.fusion_grid \\
        --train ../shared/datasets/squad_v11_train_11articles.json \\
        --dev ../shared/datasets/squad_v2_dev_5articles.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from benchmarks.query_retrieval import cached_encoder, load_index, private_postgres
from benchmarks.retrieval_baseline import first_rank, quality
from benchmarks.retrieval_data import TUNE, build_datasets

STEPS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=Path, required=True, help="SQuAD 1.1 train subset JSON")
    parser.add_argument("--dev", type=Path, required=True,
                        help="SQuAD 2.0 dev subset JSON (distractor paragraphs only)")
    parser.add_argument("--encoder", default="minilm")
    parser.add_argument("--show", type=int, default=15, help="best settings to print")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()

    from services.common.embeddings import canonical_model_id
    from services.rag import passages
    from services.rag.access import scope_for
    from services.rag.fusion import FusionWeights
    from services.rag.retrieval import DEFAULT_WEIGHTS, fuse, hybrid_pool

    dataset = build_datasets(args.train, args.dev)[0]
    questions = dataset.parts[TUNE]
    os.environ["CUSTOMLLM_EMBEDDING_MODEL_ID"] = canonical_model_id(args.encoder)
    started = time.perf_counter()
    with private_postgres() as engine:
        encode_passages, _, queries = cached_encoder(args.encoder)
        load_index(engine, dataset.paragraphs, encode_passages)
        scope = scope_for("bench-reader", [], "public")
        pools = [hybrid_pool(engine, vector, q.text, scope, weights=DEFAULT_WEIGHTS)
                 for q, vector in zip(questions, queries([q.text for q in questions]),
                                      strict=True)]
    print(f"{len(questions)} tune questions, pools fetched in "
          f"{time.perf_counter() - started:.0f} s", flush=True)

    def measure(weights: FusionWeights) -> dict[str, float]:
        ranks = [first_rank(q.doc_id, passages.doc_ids(fuse(members, signals, weights)))
                 for q, (members, signals) in zip(questions, pools, strict=True)]
        return quality(ranks)

    grid: list[dict[str, Any]] = []
    for lexical, phrase, near, coverage in itertools.product(STEPS[:3], STEPS[1:4], STEPS[1:4],
                                                             STEPS[2:]):
        vector = round(1.0 - lexical - phrase - near - coverage, 2)
        weights = replace(DEFAULT_WEIGHTS, vector=vector, lexical=lexical, phrase=phrase,
                          proximity=near, coverage=coverage)
        grid.append({"weights": asdict(weights), **measure(weights)})
    grid.sort(key=lambda row: (-row["hit@1"], -row["mrr@10"]))
    default = {"weights": asdict(DEFAULT_WEIGHTS), **measure(DEFAULT_WEIGHTS)}
    position = next((i for i, row in enumerate(grid, start=1)
                     if row["weights"] == default["weights"]), None)
    names = ("vector", "lexical", "phrase", "proximity", "coverage")
    print("  " + "  ".join(f"{n:>9}" for n in names) + "    hit@1  hit@5  mrr@10")
    for row in grid[: args.show]:
        print("  " + "  ".join(f"{row['weights'][n]:>9.2f}" for n in names)
              + f"    {row['hit@1']:.3f}  {row['hit@5']:.3f}  {row['mrr@10']:.3f}")
    print(f"defaults: hit@1 {default['hit@1']:.3f}, hit@5 {default['hit@5']:.3f}, "
          f"MRR@10 {default['mrr@10']:.3f}; rank {position} of {len(grid)} settings; "
          f"the top {args.show} span hit@1 {grid[args.show - 1]['hit@1']:.3f}–"
          f"{grid[0]['hit@1']:.3f}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "fusion_grid.json").write_text(json.dumps(
        {"questions": len(questions), "part": f"{dataset.name}/{TUNE}", "default": default,
         "default_rank": position, "grid": grid}, indent=2))


if __name__ == "__main__":
    main()
