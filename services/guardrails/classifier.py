"""The learned layer of prompt-injection detection: trained by the project on data the user
supplies (``customllm guardrails train --data FILE.jsonl``), never downloaded.

Features are TF-IDF word uni/bi-grams and character 2–5-grams of the *skeleton* of the
normalized text (homoglyphs, leetspeak and spacing undone) and of payloads decoded from it
(base64, hex...), so a model trained on plain attacks still recognises their disguised
forms; the model is a linear SVM whose scores are calibrated into probabilities (sigmoid,
internal 3-fold), which the policy threshold reads.

Quality is reported as k-fold cross-validated *held-out* scores (every text scored by a model
that never saw it): precision, detection rate (recall), false-positive rate, F1 and ROC-AUC.
The model is saved with skops (no pickle: loading only accepts the scikit-learn types listed
here), with a JSON sidecar holding those scores and the training data's hash.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from services.common.exceptions import CustomLLMError
from services.common.text_normalize import decoded_payloads, normalize, skeleton

MODEL_FILE = "injection-classifier.skops"
FORMAT_VERSION = 1
MIN_PER_CLASS = 4


class ClassifierError(CustomLLMError):
    """Training data unusable, or a model file missing or not trusted."""


def features_text(text: str) -> str:
    """What the vectorizers see: the skeleton of the normalized text, followed by the
    skeletons of any payloads decoded from it (an instruction hidden in base64 is scored on
    what it says, not on its letters)."""
    normalized = normalize(text).text
    parts = [skeleton(normalized)]
    parts.extend(skeleton(p.text) for p in decoded_payloads(normalized))
    return "\n".join(parts)


def default_model_path(state_dir: Path) -> Path:
    return state_dir / "guardrails" / MODEL_FILE


def _build_pipeline(seed: int = 0) -> Any:  # noqa: ANN401 - a scikit-learn Pipeline
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import FeatureUnion, Pipeline
    from sklearn.svm import LinearSVC

    features = FeatureUnion([
        ("words", TfidfVectorizer(analyzer="word", ngram_range=(1, 2), min_df=1,
                                  sublinear_tf=True, token_pattern=r"(?u)\b\w+\b")),
        ("chars", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), min_df=1,
                                  sublinear_tf=True, max_features=200_000)),
    ])
    svm = LinearSVC(C=0.5, class_weight="balanced", random_state=seed)
    return Pipeline([("features", features),
                     ("model", CalibratedClassifierCV(svm, method="sigmoid", cv=3))])


@dataclass
class InjectionClassifier:
    pipeline: Any
    meta: dict[str, Any] = field(default_factory=dict)

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Probability of "injection" per text."""
        if not texts:
            return np.zeros(0)
        prepared = [features_text(t) for t in texts]
        return self.pipeline.predict_proba(prepared)[:, 1]

    def score(self, text: str) -> float:
        return float(self.predict_proba([text])[0])


# --- data --------------------------------------------------------------------------------------

def read_jsonl(path: Path) -> tuple[list[str], list[int]]:
    """``{"text": ..., "label": 0|1}`` per line (1 = injection). Bad lines are an error that
    names the line, not something skipped silently."""
    texts: list[str] = []
    labels: list[int] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ClassifierError(f"cannot read {path}: {exc}") from exc
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            text, label = row["text"], int(row["label"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ClassifierError(f"{path}:{number}: expected {{\"text\", \"label\"}}: {exc}") \
                from exc
        if label not in (0, 1) or not isinstance(text, str):
            raise ClassifierError(f"{path}:{number}: label must be 0 or 1 and text a string")
        texts.append(text)
        labels.append(label)
    return texts, labels


def _check_data(labels: Sequence[int], folds: int) -> None:
    positives = sum(labels)
    negatives = len(labels) - positives
    need = max(MIN_PER_CLASS, folds)
    if positives < need or negatives < need:
        raise ClassifierError(f"need at least {need} injections and {need} benign texts "
                              f"(got {positives} and {negatives})")


def data_hash(texts: Sequence[str], labels: Sequence[int]) -> str:
    digest = hashlib.sha256()
    for text, label in zip(texts, labels, strict=True):
        digest.update(f"{label}\t{text}\n".encode())
    return digest.hexdigest()


# --- metrics -----------------------------------------------------------------------------------

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
    return {"threshold": threshold, "precision": round(precision, 4),
            "detection_rate": round(recall, 4), "fpr": round(fp / (fp + tn) if fp + tn else 0.0, 4),
            "f1": round(f1, 4), "roc_auc": round(auc, 4), "tp": tp, "fp": fp, "fn": fn, "tn": tn}


@dataclass(frozen=True)
class CvReport:
    folds: int
    metrics: dict[str, dict[str, float]]  # by threshold label
    oof_scores: list[float]  # every text's held-out score, in input order
    fold_of: list[int]  # which fold held each text out


def cross_validate(texts: Sequence[str], labels: Sequence[int], folds: int = 5,
                   thresholds: Sequence[float] = (0.5, 0.8), seed: int = 0,
                   progress: Callable[[int, int], None] | None = None) -> CvReport:
    """Stratified k-fold: each fold's texts scored by a model trained on the other folds."""
    from sklearn.model_selection import StratifiedKFold

    _check_data(labels, folds)
    y = np.asarray(labels)
    oof = np.zeros(len(texts))
    fold_of = np.zeros(len(texts), dtype=int)
    prepared = np.asarray([features_text(t) for t in texts], dtype=object)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for k, (train_idx, test_idx) in enumerate(splitter.split(prepared, y)):
        pipeline = _build_pipeline(seed)
        pipeline.fit(list(prepared[train_idx]), y[train_idx])
        oof[test_idx] = pipeline.predict_proba(list(prepared[test_idx]))[:, 1]
        fold_of[test_idx] = k
        if progress is not None:
            progress(k + 1, folds)
    metrics = {f"{t:g}": metrics_at(labels, oof, t) for t in thresholds}
    return CvReport(folds, metrics, [float(s) for s in oof], [int(f) for f in fold_of])


def train(texts: Sequence[str], labels: Sequence[int], seed: int = 0,
          cv: CvReport | None = None) -> InjectionClassifier:
    """Fit on all the data; ``cv`` (from ``cross_validate``) is recorded as the model's
    held-out quality."""
    _check_data(labels, 3)
    pipeline = _build_pipeline(seed)
    pipeline.fit([features_text(t) for t in texts], np.asarray(labels))
    meta: dict[str, Any] = {
        "format": FORMAT_VERSION, "trained_at": datetime.now(UTC).isoformat(),
        "examples": len(texts), "injections": int(sum(labels)),
        "data_sha256": data_hash(texts, labels),
    }
    if cv is not None:
        meta["cv"] = {"folds": cv.folds, "metrics": cv.metrics}
    return InjectionClassifier(pipeline, meta)


# --- persistence -------------------------------------------------------------------------------

# Types a model file may contain; anything else makes loading fail (a tampered file cannot
# smuggle code in through a pickle).
_TRUSTED_PREFIXES = ("sklearn.", "numpy.", "scipy.sparse.", "builtins.")


def save(classifier: InjectionClassifier, path: Path) -> Path:
    import skops.io as sio

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    sio.dump(classifier.pipeline, tmp)
    tmp.replace(path)
    path.with_suffix(".json").write_text(json.dumps(classifier.meta, indent=2), encoding="utf-8")
    return path


def load(path: Path) -> InjectionClassifier:
    import skops.io as sio

    if not path.is_file():
        raise ClassifierError(f"no injection classifier at {path}: train one with "
                              "`customllm guardrails train --data FILE.jsonl`")
    untrusted = sio.get_untrusted_types(file=path)
    refused = [t for t in untrusted if not t.startswith(_TRUSTED_PREFIXES)]
    if refused:
        raise ClassifierError(f"{path} holds types outside scikit-learn: {refused}")
    pipeline = sio.load(path, trusted=untrusted)
    meta_path = path.with_suffix(".json")
    meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.is_file() else {}
    return InjectionClassifier(pipeline, meta)


_CACHE: dict[Path, tuple[int, InjectionClassifier]] = {}
_CACHE_LOCK = threading.Lock()


def load_cached(path: Path) -> InjectionClassifier | None:
    """The model at ``path`` (re-read when the file changes, so retraining needs no restart),
    or None when none has been trained."""
    try:
        mtime = path.stat().st_mtime_ns
    except OSError:
        return None
    with _CACHE_LOCK:
        cached = _CACHE.get(path)
        if cached is not None and cached[0] == mtime:
            return cached[1]
        classifier = load(path)
        _CACHE[path] = (mtime, classifier)
        return classifier
