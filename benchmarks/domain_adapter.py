"""Specialising the answer adapter on a domain: fresh LoRA weights against ``--from answers``.

    .venv/bin/python -m benchmarks.domain_adapter \\
        --squad ../shared/datasets/squad_v11_train_11articles.json

A "domain" here is the answer adapter's held-out articles (``answer_data.SPLIT``: it never
trained on them). Their paragraphs are split by source: questions about even-numbered
paragraphs are the domain's training examples, written as a team would write them (the
default template's full prompt over three passages, the answer with its citation), and
questions about odd-numbered paragraphs are the test. Two adapters are trained on the same
examples with the same shape, seed, steps and learning rate:

* **fresh**: new LoRA weights on the full prompt (what ``finetune submit`` did before
  ``--from``), served by name on the full prompt;
* **from answers**: the shipped answers adapter continued (``--from answers``), which
  re-encodes the examples on its compact prompt and is served on it.

In the same run, on the same test questions, each is measured beside the base model under the
constraint (the naive baseline) and the shipped answers adapter as served by default, through
``LocalBackend.generate`` (the rag worker's generation call; retrieval top 3 simulated, as in
``benchmarks.answers``). Answerable questions only: each adapter answers on its own (no
calibrated "don't know" margin), so false "don't know" is reported and abstention is not.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks.answers import ADAPTER, run_all
from benchmarks.answers_data import Case, load_cases
from benchmarks.answers_report import summarize

OUT = Path("docs/benchmarks")
FRESH, CONTINUED = "domain-fresh", "domain-from-answers"
COLUMNS = ("exact_match", "token_f1", "citation_accuracy", "false_no_answer", "p50_s")

logger = logging.getLogger(__name__)


def paragraph_of(case: Case) -> int:
    """The index of the question's own paragraph in its article (its gold passage's id)."""
    return int(case.passages[case.gold_n - 1].doc_id.rsplit("#", 1)[1])


def split_by_paragraph(cases: Sequence[Case], train: int, test: int,
                       seed: int) -> tuple[list[Case], list[Case]]:
    """Questions of even-numbered paragraphs to train on, of odd-numbered ones to test on:
    no test question's paragraph is one the adapters were taught on."""
    rng = random.Random(seed)
    even = [c for c in cases if paragraph_of(c) % 2 == 0]
    odd = [c for c in cases if paragraph_of(c) % 2 == 1]
    return rng.sample(even, min(train, len(even))), rng.sample(odd, min(test, len(odd)))


def as_example(case: Case, template: object) -> object:
    """A training example as a team writes one: the full prompt, the cited answer."""
    from services.common.prompting.prompts import render
    from services.finetune.examples import ChatExample

    messages = render(template, case.question, case.passages)
    return ChatExample(messages=[*messages, {"role": "assistant",
                                             "content": f"{case.answers[0]} [{case.gold_n}]."}])


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--squad", type=Path, required=True)
    parser.add_argument("--train", type=int, default=120, help="training examples")
    parser.add_argument("--test", type=int, default=90, help="test questions")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--learning-rate", type=float, default=2e-4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    asyncio.run(_run(args))


def _train(examples: list, out: Path, args: argparse.Namespace,
           init: Path | None) -> dict[str, float]:
    from services.finetune.training import TrainingConfig, train_adapter

    config = TrainingConfig(method="lora", lora_r=16, lora_alpha=32, lora_top_layers=16,
                            target_modules=("q_proj", "k_proj", "v_proj", "o_proj",
                                            "gate_proj", "up_proj", "down_proj"),
                            max_steps=args.steps, batch_size=args.batch_size,
                            learning_rate=args.learning_rate, max_seq_len=1024,
                            seed=args.seed)
    started = time.perf_counter()
    result = train_adapter(examples, config, out, init_adapter_dir=init)
    logger.warning("trained %s: %d steps, loss %.3f, %.0f s", out.name, result.steps,
                   result.final_loss or float("nan"), time.perf_counter() - started)
    return {"steps": result.steps, "final_loss": result.final_loss,
            "train_s": round(time.perf_counter() - started, 1),
            "answer_examples": result.extra.get("answer_examples")}


async def _run(args: argparse.Namespace) -> None:
    import torch

    from services.common.config import Settings
    from services.common.generation.answer_adapter import SHIPPED_DIR, AnswerAdapter
    from services.common.generation.local_backend import LocalBackend
    from services.common.generation.local_engine import LocalEngine
    from services.common.prompting.prompts import load_template
    from services.finetune.answer_data import SPLIT

    torch.set_num_threads(args.threads)
    template = load_template("default")
    by_article = load_cases(args.squad, unanswerable=False, seed=args.seed)
    domain = SPLIT["squad_v11"]["heldout"]
    cases = [c for title in sorted(domain) for c in by_article.get(title, [])]
    train_cases, test_cases = split_by_paragraph(cases, args.train, args.test, args.seed)
    examples = [as_example(c, template) for c in train_cases]

    library = Path(tempfile.mkdtemp(prefix="customllm-domain-"))
    try:
        training = {FRESH: _train(examples, library / FRESH, args, None),
                    CONTINUED: _train(examples, library / CONTINUED, args, SHIPPED_DIR)}
        shutil.copytree(SHIPPED_DIR, library / ADAPTER)
        engine = LocalEngine.from_settings(Settings(adapters_dir=library))
        base = LocalBackend(engine)
        served = LocalBackend(engine, answer_adapter=AnswerAdapter(ADAPTER, None))
        base.warm_up()
        runs = {
            "base + constraint (naive baseline)": await run_all(
                base, test_cases, "extractive", template, "base"),
            "answers adapter as shipped (served default)": await run_all(
                served, test_cases, "extractive", template, "answers"),
            "fresh LoRA on the domain (full prompt)": await run_all(
                base, test_cases, "extractive", template, FRESH, adapter=FRESH),
            "--from answers on the domain (compact prompt)": await run_all(
                base, test_cases, "extractive", template, CONTINUED, adapter=CONTINUED),
        }
    finally:
        shutil.rmtree(library, ignore_errors=True)
    rows = {name: summarize(outcomes, template.no_answer) for name, outcomes in runs.items()}
    report = {
        "command": "python -m benchmarks.domain_adapter --squad ../shared/datasets/squad_v11_"
                   f"train_11articles.json --train {args.train} --test {args.test} --steps "
                   f"{args.steps}",
        "path": "LocalBackend.generate (no Kafka, no Postgres); retrieval top 3 simulated",
        "domain_articles": list(domain), "train_questions": len(train_cases),
        "test_questions": len(test_cases), "split": "even paragraphs train, odd ones test",
        "hyperparameters": {"steps": args.steps, "batch_size": args.batch_size,
                            "learning_rate": args.learning_rate, "seed": args.seed,
                            "lora": "r16 alpha32, 7 modules, top 16 layers (the shipped shape)"},
        "threads": args.threads, "load_average": os.getloadavg(),
        "training": training, "rows": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "domain_adapter.json").write_text(json.dumps(report, indent=1))
    table = write_table(rows)
    write_plot(rows, args.out / "domain_adapter.png")
    (args.out / "domain_adapter.md").write_text(
        f"# Specialising the answer adapter on a domain\n\n`{report['command']}`\n\n"
        f"{__doc__.split(chr(10) + chr(10), 2)[2].strip()}\n\n{table}\n\n"
        "![EM, F1, false don't know](domain_adapter.png)\n\nTraining: "
        + "; ".join(f"{k}: {v['steps']} steps, final loss {v['final_loss']:.3f}, "
                    f"{v['train_s']} s" for k, v in training.items()) + "\n")
    logger.warning("\n%s", table)


def write_plot(rows: dict[str, dict[str, float]], path: Path) -> None:
    """EM, F1 and false "don't know" per system, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measures = (("exact_match", "exact match"), ("token_f1", "token F1"),
                ("false_no_answer", "false \"don't know\""))
    figure, axis = plt.subplots(figsize=(9, 4))
    width = 0.8 / len(rows)
    for i, (name, row) in enumerate(rows.items()):
        xs = [m + i * width for m in range(len(measures))]
        bars = axis.bar(xs, [row[key] for key, _ in measures], width, label=name)
        axis.bar_label(bars, fmt="%.2f", fontsize=7)
    axis.set_xticks([m + width * (len(rows) - 1) / 2 for m in range(len(measures))],
                    [label for _, label in measures])
    axis.set_ylim(0, 1)
    axis.set_title("Domain test questions (held-out paragraphs)")
    axis.legend(fontsize=7, loc="upper right")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def write_table(rows: dict[str, dict[str, float]]) -> str:
    lines = ["| on the domain's test questions | EM | F1 | citation acc. | false don't know "
             "| p50 s |", "|---|---|---|---|---|---|"]
    for name, row in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{row[c]:.3f}" for c in COLUMNS) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
