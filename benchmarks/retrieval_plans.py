"""Query plans of the retrieval SQL: Postgres' cached generic plan against planning per question.

    .venv/bin/python -m benchmarks.retrieval_plans \
        --train ../shared/datasets/squad_v11_train_11articles.json \
        --dev ../shared/datasets/squad_v2_dev_5articles.json

psycopg prepares a statement once a connection has run it five times, and Postgres (its default
``plan_cache_mode = auto``) may then serve it from a generic plan that knows neither the
question's terms nor the vector nor the scope. The retrieval transaction chooses the mode per
retrieval mode (``services.rag.retrieval.PLAN_CACHE_MODES``); this benchmark runs every mode
both ways, in alternating rounds on the same held-out questions, index (set 1, the default
encoder) and connections, so a busy moment of the shared machine falls on both, and checks that
both return the same ranking. The table marks the setting each mode ships with.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmarks.harness import cpu_probe_s
from benchmarks.ingest import percentile
from benchmarks.query_retrieval import cached_encoder, load_index, private_postgres
from benchmarks.retrieval_data import HELD_OUT, build_datasets

SETTINGS = ("generic", "custom")  # the baseline first in every round
MODES = ("hybrid", "lexical", "vector")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", type=Path, required=True, help="SQuAD 1.1 train subset JSON")
    parser.add_argument("--dev", type=Path, required=True, help="SQuAD 2.0 dev subset JSON")
    parser.add_argument("--encoder", default="minilm-int8")
    parser.add_argument("--questions", type=int, default=300, help="held-out questions a round")
    parser.add_argument("--rounds", type=int, default=4, help="alternating rounds per setting")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()

    dataset = build_datasets(args.train, args.dev)[0]
    questions = list(dataset.parts[HELD_OUT])[:args.questions]
    started = time.perf_counter()
    probe_start = cpu_probe_s()
    with private_postgres() as engine:
        encode_passages, _, encode_queries = cached_encoder(args.encoder)
        load_index(engine, dataset.paragraphs, encode_passages)
        vectors = encode_queries([q.text for q in questions])
        results = measure(engine, [q.text for q in questions], vectors, args.rounds)
    results.update({
        "command": command(args), "questions": len(questions), "rounds": args.rounds,
        "encoder": args.encoder, "wall_s": round(time.perf_counter() - started, 1),
        "cpu_probe_s": {"start": probe_start, "end": cpu_probe_s()}})
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "retrieval_plans.json").write_text(json.dumps(results, indent=2))
    (args.out / "retrieval_plans.md").write_text(markdown(results))
    chart(results, args.out / "retrieval_plans.png")
    print(markdown(results))


def measure(engine: Any, questions: list[str], vectors: Any, rounds: int) -> dict[str, Any]:
    """Per mode and setting: every question's latency over all rounds, and whether the two
    settings ranked every question alike."""
    from services.rag.access import scope_for
    from services.rag.retrieval import retrieve

    scope = scope_for("bench-reader", [], "public")
    latencies: dict[str, dict[str, list[float]]] = {m: {s: [] for s in SETTINGS} for m in MODES}
    rankings: dict[str, dict[str, list[list[str]]]] = {m: {} for m in MODES}
    for _ in range(rounds):
        for setting in SETTINGS:
            with plans(setting):
                for mode in MODES:
                    ranked = []
                    for question, vector in zip(questions, vectors, strict=True):
                        begun = time.perf_counter()
                        got = retrieve(engine, vector, question, scope, 10, mode=mode,
                                       unit="passage")
                        latencies[mode][setting].append((time.perf_counter() - begun) * 1000)
                        ranked.append([c.chunk_id for c in got])
                    rankings[mode].setdefault(setting, ranked)
    modes = {}
    for mode in MODES:
        modes[mode] = {setting: {"p50_ms": round(percentile(values, 50), 2),
                                 "p95_ms": round(percentile(values, 95), 2)}
                       for setting, values in latencies[mode].items()}
        modes[mode]["same_rankings"] = rankings[mode]["generic"] == rankings[mode]["custom"]
        modes[mode]["shipped"] = shipped(mode)
    return {"modes": modes}


@contextmanager
def plans(setting: str) -> Iterator[None]:
    """Every retrieval mode with ``auto`` (``generic``: a cached generic plan when Postgres
    prefers it) or ``force_custom_plan`` (``custom``) for the duration."""
    from services.rag import retrieval

    saved = dict(retrieval.PLAN_CACHE_MODES)
    value = "auto" if setting == "generic" else "force_custom_plan"
    try:
        retrieval.PLAN_CACHE_MODES.update({mode: value for mode in saved})
        yield
    finally:
        retrieval.PLAN_CACHE_MODES.update(saved)


def shipped(mode: str) -> str:
    from services.rag import retrieval

    return "generic" if retrieval.PLAN_CACHE_MODES[mode] == "auto" else "custom"


def markdown(results: dict[str, Any]) -> str:
    lines = [f"Command: `{results['command']}`", "",
             f"{results['questions']} held-out questions of set 1 × {results['rounds']} "
             f"alternating rounds per setting, top 10 passages, encoder {results['encoder']}; "
             f"CPU probe {results['cpu_probe_s']['start']} s at the start, "
             f"{results['cpu_probe_s']['end']} s at the end.", "",
             "| mode | generic plan p50 / p95 ms | planned per question p50 / p95 ms "
             "| same rankings | shipped |", "|---|---|---|---|---|"]
    for mode, entry in results["modes"].items():
        generic, custom = entry["generic"], entry["custom"]
        lines.append(f"| {mode} | {generic['p50_ms']} / {generic['p95_ms']} "
                     f"| {custom['p50_ms']} / {custom['p95_ms']} | {entry['same_rankings']} "
                     f"| {entry['shipped']} |")
    return "\n".join(lines) + "\n"


def chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    modes = list(results["modes"])
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, setting in enumerate(SETTINGS):
        ax.bar([m + i * 0.38 for m in range(len(modes))],
               [results["modes"][mode][setting]["p50_ms"] for mode in modes], 0.38,
               label="cached generic plan" if setting == "generic" else "planned per question")
    ax.set_xticks([m + 0.19 for m in range(len(modes))], modes)
    ax.set_ylabel("p50 ms per question")
    ax.set_title(f"Retrieval SQL: cached generic plan vs planned per question "
                 f"({results['questions']} held-out questions)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def command(args: argparse.Namespace) -> str:
    return (f".venv/bin/python -m benchmarks.retrieval_plans --train {args.train} "
            f"--dev {args.dev} --questions {args.questions} --rounds {args.rounds}")


if __name__ == "__main__":
    main()
