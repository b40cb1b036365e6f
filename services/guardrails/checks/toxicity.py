"""Toxicity: abusive, hateful or threatening language, in questions and in answers.

The model is ``alt-profanity-check`` (a linear SVM over TF-IDF, calibrated, shipped inside the
wheel: no download; run as one matrix product, ``_FoldedModel``). It is English-only and
word-based, so it is scored on the text and on its skeleton (where "f*ck", "1d10t" and
spaced-out insults are undone), and the higher score counts. Larger transformer toxicity
models (Detoxify and the like) fetch their weights from a hub at first use, which these
machines cannot do; a packaged one can be added behind ``toxicity_score`` without changing
its callers.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import cache

import numpy as np

from services.common.text_normalize import skeleton
from services.guardrails.checks.results import CheckResult
from services.guardrails.policy import CheckPolicy

CHECK = "toxicity"
_LOCK = threading.Lock()


@dataclass(frozen=True)
class _FoldedModel:
    """The library's model as one matrix product: its calibrated classifier averages five
    linear SVMs, each through its own sigmoid, and scikit-learn's ``predict_proba`` spends
    ~2.5 ms per call on validation and per-fold bookkeeping around five sparse products (most
    of this check's cost on a short question). Folding the five weight vectors into one
    matrix gives the same probabilities (``tests/unit/guardrails/test_toxicity.py`` holds it
    to the library's own ``predict_prob``) for a tenth of the time."""

    vectorizer: object
    weights: np.ndarray  # (features, folds)
    intercepts: np.ndarray  # (folds,)
    slopes: np.ndarray  # (folds,): each fold's sigmoid calibration, a and b
    offsets: np.ndarray

    def predict_prob(self, texts: list[str]) -> np.ndarray:
        features = self.vectorizer.transform(texts)  # type: ignore[attr-defined]
        decisions = np.asarray(features @ self.weights) + self.intercepts
        return (1.0 / (1.0 + np.exp(decisions * self.slopes + self.offsets))).mean(axis=1)


@cache
def _model() -> _FoldedModel:
    from profanity_check import profanity_check as library

    folds = library.model.calibrated_classifiers_
    return _FoldedModel(
        vectorizer=library.vectorizer,
        weights=np.stack([f.estimator.coef_.ravel() for f in folds], axis=1),
        intercepts=np.array([float(f.estimator.intercept_[0]) for f in folds]),
        slopes=np.array([float(f.calibrators[0].a_) for f in folds]),
        offsets=np.array([float(f.calibrators[0].b_) for f in folds]))


def toxicity_scores(texts: list[str]) -> list[float]:
    """One score in [0, 1] per text (the higher of the text's and its skeleton's)."""
    if not texts:
        return []
    skeletons = [skeleton(t) for t in texts]
    with _LOCK:
        probs = _model().predict_prob(list(texts) + skeletons)
    n = len(texts)
    return [float(max(probs[i], probs[n + i])) if texts[i].strip() else 0.0 for i in range(n)]


def toxicity_score(text: str) -> float:
    """Probability-like score in [0, 1] that ``text`` is toxic."""
    return toxicity_scores([text])[0]


def check_toxicity(text: str, policy: CheckPolicy) -> CheckResult:
    if not policy.enabled:
        return CheckResult(CHECK, None, False, "skip", "disabled by policy")
    score = toxicity_score(text)
    triggered = score >= policy.threshold
    reason = (f"toxic language (score {score:.2f} ≥ {policy.threshold:.2f})" if triggered
              else "")
    return CheckResult(CHECK, score, triggered, policy.action if triggered else "allow", reason)
