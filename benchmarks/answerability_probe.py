"""Can the answer adapter's own state tell an answerable question from an unanswerable one?

    .venv/bin/python -m benchmarks.answerability_probe \
        --squad ../shared/datasets/squad_v11_train_11articles.json \
        --squad2 ../shared/datasets/squad_v2_dev_5articles.json

The abstention check decides on the adapter's first-step scores, which separate SQuAD 2.0's
unanswerable questions from answerable ones at AUC ~0.67. This asks whether the hidden state
behind those scores holds more: a logistic-regression probe on the shipped adapter's hidden
state at the compact prompt's last token (final layer, a middle layer, the mean over the
prompt), trained on the adapter's *training* articles and read on the calibration and held-out
articles (split by article, :data:`services.finetune.answer_data.SPLIT`). Beside it, in the
same run, a naive baseline: the share of the question's content words that the best kept
sentence holds. Held out, two contrasts: answerable questions of both sets against SQuAD
2.0's unanswerable ones (what the answers benchmark mixes), and answerable against unanswerable
questions of the same SQuAD 2.0 articles (no difference of source to lean on).
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path
from typing import Any

OUT = Path("docs/benchmarks/experiments/answerability_probe.json")
SEED = 20261202
LAYERS = {"final layer, last token": 0, "layer -8, last token": 1, "final layer, mean": 2}


def question_parts(squad11: Path, squad2: Path) -> dict[str, dict[str, list[Any]]]:
    from services.finetune.answer_data import SPLIT, questions

    rng = random.Random(1)
    out: dict[str, dict[str, list[Any]]] = {}
    for part in ("train", "calibration", "heldout"):
        v11 = questions(squad11, SPLIT["squad_v11"][part], SEED)
        v2 = questions(squad2, SPLIT["squad_v2"][part], SEED)
        kinds = {"answerable": [q for q in v11 + v2 if q.kind == "answerable"],
                 "unanswerable": [q for q in v2 if q.kind == "squad2_unanswerable"],
                 "v2_answerable": [q for q in v2 if q.kind == "answerable"]}
        for items in kinds.values():
            rng.shuffle(items)
        out[part] = kinds
    return out


def drawn(parts: dict[str, dict[str, list[Any]]], part: str,
          sizes: dict[str, int]) -> tuple[list[Any], Any]:
    """The first ``n`` questions of each kind of a part, and their kinds as labels."""
    import numpy as np

    qs, labels = [], []
    for kind, n in sizes.items():
        chosen = parts[part][kind][:n]
        qs += chosen
        labels += [kind] * len(chosen)
    return qs, np.array(labels)


def held_out_sizes(held_out: Any) -> dict[str, int]:
    return dict(zip(("answerable", "unanswerable", "v2_answerable"), held_out, strict=True))


# The contrasts every answerability reader is read on: (part, the two kinds compared).
CONTRASTS = {
    "calibration": ("calibration", ("answerable", "unanswerable")),
    "held out: answerable (both sets) vs SQuAD 2.0 unanswerable":
        ("heldout", ("answerable", "unanswerable")),
    "held out: SQuAD 2.0 answerable vs unanswerable, same articles":
        ("heldout", ("v2_answerable", "unanswerable")),
}


def unanswerable_auc(scores: Any, labels: Any, pair: tuple[str, str]) -> float:
    """ROC-AUC of ``scores`` for "unanswerable" among the questions of the two kinds."""
    import numpy as np
    from sklearn.metrics import roc_auc_score

    keep = np.isin(labels, pair)
    return round(float(roc_auc_score(labels[keep] == "unanswerable", scores[keep])), 3)


def write_report(report: dict[str, Any], rows: dict[str, dict[str, float]], names: list[str],
                 out: Path) -> None:
    """The JSON record, and the table printed."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({**report, "auc_unanswerable_higher": rows}, indent=1) + "\n")
    print("| AUC (unanswerable scored higher) | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for label, values in rows.items():
        print(f"| {label} | " + " | ".join(f"{values[n]:.3f}" for n in names) + " |")


def _features(model: Any, tokenizer: Any, qs: list[Any], no_answer: str) -> Any:
    """Per question: the three hidden-state views and the naive baseline's coverage."""
    import numpy as np
    import torch

    from services.common.generation.evidence_prompt import compact_messages, compact_passages
    from services.finetune.answer_data import prompt_ids

    rows, coverage = [], []
    for q in qs:
        compact = compact_passages(q.question, q.passages)
        ids = prompt_ids(tokenizer, compact_messages(q.question, compact, no_answer))
        with torch.no_grad():
            states = model(torch.tensor([ids]), output_hidden_states=True).hidden_states
        rows.append(np.stack([states[-1][0, -1].numpy(), states[-8][0, -1].numpy(),
                              states[-1][0].mean(0).numpy()]))
        coverage.append(word_coverage(q.question, compact))
    return np.array(rows), np.array(coverage)


def word_coverage(question: str, compact: Any) -> float:
    """The naive baseline: the share of the question's content words the best kept sentence
    holds (``compact``: the ``(n, text)`` passages the adapter reads)."""
    from services.common.generation.evidence_focus import question_words, stem

    wanted = question_words(question)
    best = max((len(wanted & {stem(w) for w in text.split()}) for _, text in compact),
               default=0)
    return best / max(1, len(wanted))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--squad", type=Path, required=True)
    parser.add_argument("--squad2", type=Path, required=True)
    parser.add_argument("--train", type=int, nargs=2, default=(400, 365),
                        metavar=("ANSWERABLE", "UNANSWERABLE"))
    parser.add_argument("--held-out", type=int, nargs=3, default=(150, 150, 100),
                        metavar=("ANSWERABLE", "UNANSWERABLE", "V2_ANSWERABLE"))
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()

    import torch
    from peft import PeftModel
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from services.common import model_store
    from services.common.config import get_settings
    from services.common.generation.answer_adapter import SHIPPED_DIR
    from services.common.prompting.prompts import load_template

    torch.set_num_threads(2)
    started = time.perf_counter()
    settings = get_settings()
    loaded = model_store.load_model(settings.local_model_gguf or model_store.default_gguf_path(),
                                    settings.local_model_id, settings.model_cache_dir)
    model = PeftModel.from_pretrained(loaded.model, str(SHIPPED_DIR)).eval()
    no_answer = load_template("default").no_answer
    parts = question_parts(args.squad, args.squad2)

    def labelled(part: str, sizes: dict[str, int]) -> tuple[Any, Any, Any]:
        qs, labels = drawn(parts, part, sizes)
        states, coverage = _features(model, loaded.tokenizer, qs, no_answer)
        return states, coverage, labels

    train = labelled("train", {"answerable": args.train[0], "unanswerable": args.train[1]})
    data = {"calibration": labelled("calibration", {"answerable": 80, "unanswerable": 80}),
            "heldout": labelled("heldout", held_out_sizes(args.held_out))}
    contrasts = {name: (data[part], pair) for name, (part, pair) in CONTRASTS.items()}
    rows: dict[str, dict[str, float]] = {}
    rows["naive baseline: question words outside the best sentence"] = {
        name: unanswerable_auc(1 - d[1], d[2], pair) for name, (d, pair) in contrasts.items()}
    for view, index in LAYERS.items():
        for c in (0.01, 0.1, 1.0):
            probe = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000))
            probe.fit(train[0][:, index], train[2] == "unanswerable")
            rows[f"probe on {view}, C {c}"] = {
                name: unanswerable_auc(probe.predict_proba(d[0][:, index])[:, 1], d[2], pair)
                for name, (d, pair) in contrasts.items()}
    write_report({"command": "python -m benchmarks.answerability_probe --squad ... --squad2 ...",
                  "adapter": str(SHIPPED_DIR), "train": args.train, "held_out": args.held_out,
                  "seconds": round(time.perf_counter() - started, 1)},
                 rows, list(contrasts), args.out)

if __name__ == "__main__":
    main()
