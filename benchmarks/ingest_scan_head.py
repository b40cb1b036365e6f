"""Experiment: the injection head in the ingest scan, with a threshold calibrated for documents.

    .venv/bin/python -m benchmarks.ingest_scan_head \
        --injections ../shared/datasets/prompt_injections_train.jsonl \
        --squad ../shared/datasets/squad_v11_train_11articles.json \
        --documents ../shared/datasets/squad_v2_dev_5articles.json \
        --pii ../shared/datasets/pii_presidio_small.json

Why: the ingest scan runs the rules only. The shipped head at its question threshold marked
7.5% of ordinary paragraphs (``benchmarks.guardrails``' document figures): it was calibrated on
questions, not on documents. Here, for each attack source held out in turn, a head is fitted on
every other source, its document threshold is the 99th percentile of its scores on the training
articles' paragraphs (at most 1% of ordinary paragraphs marked there), and it is read on other
articles' paragraphs (``--documents``): as they are (false marks) and with one held-out attack
inserted after the first sentence (indirect injection caught), beside the rules in the same
run. Two ways to read a chunk: its whole vector (what the embedder already computes, free) and
the head's views (windows and sentences, as the input check reads a question: more encoding).
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.guardrails_loso import labelled, source_parser
from services.common import linear_head
from services.common.linear_head import DOCUMENT_THRESHOLD, LinearHead
from services.guardrails import classifier, head_training, sources

OUT = Path("docs/benchmarks/experiments/ingest_scan_head.json")
HELD_OUT = ("deepset", "handwritten_attacks", "seed_attacks")
ALLOWED_FALSE_MARKS = 0.01  # of the training articles' paragraphs
RULES_THRESHOLD = 0.5  # the ingest scan's mark


def paragraphs(path: Path) -> list[str]:
    return [p for article in articles(path) for p in article]


def articles(path: Path) -> list[list[str]]:
    return [[p["context"] for p in a["paragraphs"]] for a in json.loads(path.read_text())["data"]]


# The --squad articles the document head trains on; the rest set its threshold.
DOCUMENT_HEAD_ARTICLES = 7


# --- a head trained for documents (measured 2026-12-06, ninth stop; not built) -------------
# The question head was trained on attacks and questions standing alone; this one learns from
# the documents themselves: ordinary paragraphs, the same with an attack inserted at a sentence
# boundary (positive), and with a benign sentence inserted there (negative, so that "a foreign
# sentence" is not what it learns), read on their whole vectors.
EncodeFn = Callable[[list[str]], np.ndarray]
VARIANTS = 2  # poisoned and benign-inserted copies of each training paragraph
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def insert_at_boundary(paragraph: str, sentence: str, rng: random.Random) -> str:
    """``paragraph`` with ``sentence`` put between two of its sentences, or before the first
    or after the last (where an attacker would put it: anywhere)."""
    parts = _SENTENCE_END.split(paragraph.strip())
    at = rng.randint(0, len(parts))
    return " ".join([*parts[:at], sentence.strip(), *parts[at:]])


def training_documents(paragraphs: Sequence[str], attacks: Sequence[str],
                       benign: Sequence[str], seed: int = 0,
                       variants: int = VARIANTS) -> tuple[list[str], list[int]]:
    """Each paragraph as it is (0), ``variants`` times with an attack inserted (1) and
    ``variants`` times with a benign sentence inserted (0)."""
    rng = random.Random(seed)
    texts: list[str] = []
    labels: list[int] = []
    for paragraph in paragraphs:
        texts.append(paragraph)
        labels.append(0)
        for _ in range(variants):
            texts.append(insert_at_boundary(paragraph, rng.choice(attacks), rng))
            labels.append(1)
            texts.append(insert_at_boundary(paragraph, rng.choice(benign), rng))
            labels.append(0)
    return texts, labels


def train_document_head(paragraphs: Sequence[str], calibration: Sequence[str],
                        attacks: Sequence[str], benign: Sequence[str], encode: EncodeFn,
                        seed: int = 0) -> LinearHead:
    """A linear head on the whole vectors of ``training_documents(paragraphs, ...)``, its
    document threshold set on ``calibration`` (ordinary paragraphs of other articles)."""
    texts, labels = training_documents(paragraphs, attacks, benign, seed)
    coef, intercept = linear_head.fit(encode(texts), labels, classifier.C, seed)
    scores = LinearHead(coef, intercept, 0.5).proba(encode(list(calibration)))
    threshold = round(float(np.quantile(scores, 1 - ALLOWED_FALSE_MARKS)), 6)
    return LinearHead(coef, intercept, threshold,
                      {DOCUMENT_THRESHOLD: threshold, "examples": len(texts)})


def poisoned(texts: Sequence[str], attacks: Sequence[str], seed: int = 11) -> list[str]:
    """Each text with one attack inserted after its first sentence."""
    rng = random.Random(seed)
    out = []
    for text in texts:
        head, sep, tail = text.partition(". ")
        out.append(f"{head}{sep}{rng.choice(attacks)} {tail}")
    return out


def marks(scores: np.ndarray, threshold: float) -> float:
    return round(float(np.mean(scores >= threshold)), 4)


GATE_SHARES = (0.1, 0.2, 0.3)  # of the calibration paragraphs that get their views read


def marked_row(on_cal: np.ndarray, on_clean: np.ndarray, on_dirty: np.ndarray,
               rules_clean: np.ndarray, rules_dirty: np.ndarray) -> dict[str, Any]:
    """Marks at the threshold only ``ALLOWED_FALSE_MARKS`` of the calibration paragraphs
    reach, alone and with the rules."""
    threshold = float(np.quantile(on_cal, 1 - ALLOWED_FALSE_MARKS))
    clean, dirty = on_clean >= threshold, on_dirty >= threshold
    return {"threshold": round(threshold, 4),
            "head_clean_marked": marks(clean, True),
            "head_poisoned_marked": marks(dirty, True),
            "rules_or_head_clean_marked": marks(clean | rules_clean, True),
            "rules_or_head_poisoned_marked": marks(dirty | rules_dirty, True)}


def cascade_row(whole: tuple[np.ndarray, ...], views: tuple[np.ndarray, ...], share: float,
                rules_clean: np.ndarray, rules_dirty: np.ndarray) -> dict[str, Any]:
    """The views read only for chunks whose whole-vector score is in the top ``share`` of the
    calibration paragraphs' (cheapest check first): the score is the views' where they were
    read, else the whole vector's; the threshold set on calibration as for the others."""
    gate = float(np.quantile(whole[0], 1 - share))
    cascaded = [np.where(w >= gate, np.maximum(w, v), w)
                for w, v in zip(whole, views, strict=True)]
    row = marked_row(*cascaded, rules_clean, rules_dirty)
    row.update({"gate": round(gate, 4), "clean_views_read": marks(whole[1], gate),
                "poisoned_views_read": marks(whole[2], gate)})
    return row


def document_head_row(encoder: Any, squad: Path, clean: Sequence[str], dirty: Sequence[str],
                      rules_clean: np.ndarray, rules_dirty: np.ndarray,
                      attacks: Sequence[str], benign: Sequence[str]) -> dict[str, Any]:
    """``train_document_head`` on the first ``DOCUMENT_HEAD_ARTICLES``
    --squad articles with the training sources' attacks and benign texts inserted, its
    threshold set on the other --squad articles, read on the unseen documents."""
    parts = articles(squad)
    train_paragraphs = [p for a in parts[:DOCUMENT_HEAD_ARTICLES] for p in a]
    calibration = [p for a in parts[DOCUMENT_HEAD_ARTICLES:] for p in a]
    head = train_document_head(train_paragraphs, calibration, attacks, benign,
                               encoder.encode_passages)
    threshold = float(head.meta[linear_head.DOCUMENT_THRESHOLD])
    on_clean = head.proba(encoder.encode_passages(list(clean))) >= threshold
    on_dirty = head.proba(encoder.encode_passages(list(dirty))) >= threshold
    return {"threshold": round(threshold, 4), "training_documents": head.meta["examples"],
            "head_clean_marked": marks(on_clean, True),
            "head_poisoned_marked": marks(on_dirty, True),
            "rules_or_head_clean_marked": marks(on_clean | rules_clean, True),
            "rules_or_head_poisoned_marked": marks(on_dirty | rules_dirty, True)}


def shipped_head_figures(encoder: Any, clean: Sequence[str], rules_clean: np.ndarray,
                         texts: Sequence[str], labels: np.ndarray,
                         owner: np.ndarray) -> dict[str, Any]:
    """What the embedder runs (``services.embedder.injection_scan``): the shipped head on each
    chunk's own vector at its shipped document threshold. False marks on the unseen
    paragraphs are held-out figures; inserted attacks are not (the shipped head trained on
    every source), so the held-out rows above stand for detection."""
    from services.embedder.injection_scan import PACKAGED_HEAD, load_scan_head
    from services.ingest.handlers import scan_chunk

    head = load_scan_head(PACKAGED_HEAD, encoder.model_id)
    assert head is not None, "the shipped head has no document threshold"
    threshold = float(head.meta[linear_head.DOCUMENT_THRESHOLD])
    on_clean = head.proba(encoder.encode_passages(list(clean))) >= threshold
    row: dict[str, Any] = {"document_threshold": threshold,
                           "head_clean_marked": marks(on_clean, True),
                           "rules_or_head_clean_marked": marks(on_clean | rules_clean, True)}
    for held in HELD_OUT:
        attacks = [t for t, y, o in zip(texts, labels, owner, strict=True) if y and o == held]
        dirty = poisoned(clean, attacks)
        on_dirty = head.proba(encoder.encode_passages(dirty)) >= threshold
        rules_dirty = np.asarray([scan_chunk(p) for p in dirty]) >= RULES_THRESHOLD
        row[f"{held} (trained on)"] = {
            "rules_poisoned_marked": marks(rules_dirty, True),
            "head_poisoned_marked": marks(on_dirty, True),
            "rules_or_head_poisoned_marked": marks(on_dirty | rules_dirty, True)}
    return row


def main(argv: Sequence[str] | None = None) -> None:
    parser = source_parser(__doc__.split("\n")[0], OUT)
    parser.add_argument("--documents", type=Path, required=True)
    args = parser.parse_args(argv)
    from services.guardrails.encoder import head_encoder
    from services.ingest.handlers import scan_chunk

    encoder = head_encoder()
    embed = encoder.encode
    named = sources.injection_sources(args.injections, args.squad, args.pii)
    texts, labels, owner = labelled(named)
    whole = head_training.embed_texts(texts, embed, classifier.views).whole
    calibration, clean = paragraphs(args.squad), paragraphs(args.documents)
    rules_clean = np.asarray([scan_chunk(p) for p in clean]) >= RULES_THRESHOLD
    results: dict[str, Any] = {}
    for held in HELD_OUT:
        train = np.flatnonzero(owner != held)
        coef, intercept = linear_head.fit(whole[train], labels[train], classifier.C)
        head = LinearHead(coef, intercept, 0.5)
        attacks = [t for t, y, o in zip(texts, labels, owner, strict=True) if y and o == held]
        dirty = poisoned(clean, attacks)
        rules_dirty = np.asarray([scan_chunk(p) for p in dirty]) >= RULES_THRESHOLD
        row: dict[str, Any] = {"attacks": len(attacks),
                               "rules": {"clean_marked": marks(rules_clean, True),
                                         "poisoned_marked": marks(rules_dirty, True)}}
        readers = {"whole vector": lambda ts, h=head: h.proba(embed(list(ts))),
                   "views": lambda ts, h=head: classifier.predict_proba(h, ts, embed)}
        scores = {name: (read(calibration), read(clean), read(dirty))
                  for name, read in readers.items()}
        for name, (on_cal, on_clean_scores, on_dirty_scores) in scores.items():
            row[name] = marked_row(on_cal, on_clean_scores, on_dirty_scores,
                                   rules_clean, rules_dirty)
        for share in GATE_SHARES:
            row[f"views where the whole vector is in its top {share:.0%}"] = cascade_row(
                scores["whole vector"], scores["views"], share, rules_clean, rules_dirty)
        row["document head (whole vector)"] = document_head_row(
            encoder, args.squad, clean, dirty, rules_clean, rules_dirty,
            [t for t, y, o in zip(texts, labels, owner, strict=True) if y and o != held],
            [t for t, y, o in zip(texts, labels, owner, strict=True) if not y and o != held])
        results[held] = row
        print(held, json.dumps(row, indent=1))
    shipped = shipped_head_figures(encoder, clean, rules_clean, texts, labels, owner)
    print("shipped head", json.dumps(shipped, indent=1))
    report = {"command": "python -m benchmarks.ingest_scan_head --injections "
                         f"{args.injections} --squad {args.squad} --documents {args.documents} "
                         f"--pii {args.pii}",
              "calibration_paragraphs": len(calibration), "documents": len(clean),
              "allowed_false_marks": ALLOWED_FALSE_MARKS, "held_out": results,
              "shipped_head": shipped}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
