"""A logistic head over sentence embeddings, optionally through one ReLU layer, stored as
plain JSON.

Why this shape: the platform already loads MiniLM, so features cost one embedding call; a
linear head on top carries to phrasings its training data never had (paraphrases land near
each other in embedding space, which word n-grams cannot do), and it is a few kilobytes of
numbers. JSON rather than a pickle: loading a model file can never run code, and the file
diffs and reviews like any other.

The operating threshold is *calibrated*: chosen on out-of-fold scores of the training data
(every text scored by a head that never saw it) to meet a target false-positive rate, so it is
never picked on the data it is later reported on.

The hidden layer exists for stance: "X are vermin" and "saying X are vermin is hateful" lie
close together in embedding space, and one hyperplane cannot put a negation or a quotation on
the other side of both; a small ReLU layer can (measured in ``benchmarks/guardrails_hate.py``).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from services.common.exceptions import CustomLLMError

HEAD_FORMAT = "customllm.linear-head/1"
# ``meta`` key of an injection head's operating point for stored chunks (read on the chunk's
# own vector), written by ``services.guardrails.build_heads``: ``threshold`` is for questions.
DOCUMENT_THRESHOLD = "document_threshold"
# Where ``customllm guardrails train`` writes a retrained injection head, under the state
# folder's ``guardrails/``: the input stage and the embedder's ingest scan both look there.
INJECTION_HEAD_FILE = "injection-head.json"
MLP_EPOCHS = 60
MLP_ALPHA = 1e-2
MLP_FORMAT = "customllm.mlp-head/1"  # the same head over one hidden ReLU layer


class HeadError(CustomLLMError):
    """A head file is missing, malformed, or does not fit the encoder."""


@dataclass(frozen=True)
class HiddenLayer:
    """``h = relu(x · weights + bias)``: ``weights`` is (embedding dim, units)."""

    weights: np.ndarray
    bias: np.ndarray


@dataclass(frozen=True)
class LinearHead:
    """``p = sigmoid(x · coef + intercept)``, where ``x`` is the embedding or, with ``hidden``,
    its hidden layer; ``threshold`` is the calibrated operating point."""

    coef: np.ndarray
    intercept: float
    threshold: float
    meta: dict[str, Any] = field(default_factory=dict)
    hidden: HiddenLayer | None = None

    @property
    def dim(self) -> int:
        """The embedding size the head reads."""
        return int((self.hidden.weights if self.hidden is not None else self.coef).shape[0])

    def proba(self, features: np.ndarray) -> np.ndarray:
        """Probability of the positive class per row of ``features``."""
        if len(features) == 0:
            return np.zeros(0)
        if features.shape[1] != self.dim:
            raise HeadError(f"head expects {self.dim} features, got "
                            f"{features.shape[1]} (trained for another encoder?)")
        x = np.asarray(features, dtype=np.float64)
        if self.hidden is not None:
            x = np.maximum(x @ self.hidden.weights + self.hidden.bias, 0.0)
        logits = x @ self.coef + self.intercept
        return 1.0 / (1.0 + np.exp(-np.clip(logits, -60, 60)))


def fit(features: np.ndarray, labels: Sequence[int], c: float = 3.0, seed: int = 0,
        weights: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """Class-balanced L2 logistic regression (minority classes are often the rare ones that
    matter: attacks, hate); ``weights`` scale single examples on top (e.g. clean hand-written
    cases among noisy crowd labels). Returns (coef, intercept)."""
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=c, class_weight="balanced", max_iter=5000, random_state=seed)
    model.fit(features, np.asarray(labels), sample_weight=weights)
    return model.coef_[0].astype(np.float64), float(model.intercept_[0])


def fit_mlp(features: np.ndarray, labels: Sequence[int], units: int, alpha: float,
            seed: int = 0, weights: np.ndarray | None = None,
            epochs: int = MLP_EPOCHS) -> tuple[HiddenLayer, np.ndarray, float]:
    """The class-balanced fit of :func:`fit` with one ReLU layer of ``units`` (L2 ``alpha``,
    Adam, a fixed number of epochs: early stopping would hold out a random tenth, which the
    cross-validation already does properly). Returns (hidden layer, coef, intercept)."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    y = np.asarray(labels)
    balanced = np.ones(len(y)) if weights is None else np.asarray(weights, dtype=np.float64)
    balanced = balanced.copy()
    for cls in (0, 1):
        mask = y == cls
        if balanced[mask].sum() > 0:
            balanced[mask] *= len(y) / (2.0 * balanced[mask].sum())
    model = MLPClassifier(hidden_layer_sizes=(units,), alpha=alpha, max_iter=epochs,
                          random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # a fixed budget, by design
        model.fit(features, y, sample_weight=balanced)
    hidden = HiddenLayer(model.coefs_[0].astype(np.float64),
                         model.intercepts_[0].astype(np.float64))
    return hidden, model.coefs_[1][:, 0].astype(np.float64), float(model.intercepts_[1][0])


def threshold_for_fpr(labels: Sequence[int], scores: Sequence[float],
                      max_fpr: float) -> float:
    """The lowest threshold whose false-positive rate on these (validation) scores is at most
    ``max_fpr``: as much detection as that budget of false refusals allows."""
    y = np.asarray(labels)
    negatives = np.sort(np.asarray(scores, dtype=np.float64)[y == 0])
    if len(negatives) == 0:
        return 0.5
    allowed = int(np.floor(max_fpr * len(negatives)))  # negatives that may score ≥ threshold
    if allowed >= len(negatives):
        return float(negatives[0])
    # Just above the (allowed+1)-th highest negative, so at most ``allowed`` reach it.
    cut = negatives[len(negatives) - allowed - 1]
    return float(min(1.0, np.nextafter(cut, np.inf)))


def _numbers(values: np.ndarray) -> list[Any]:
    return np.round(values.astype(np.float64), 7).tolist()


def fit_head(features: np.ndarray, labels: Sequence[int], c: float = 3.0, seed: int = 0,
             weights: np.ndarray | None = None, units: int = 0,
             alpha: float = MLP_ALPHA) -> LinearHead:
    """A head of either shape (``units`` 0: linear, with L2 ``c``; else one ReLU layer with L2
    ``alpha``), at threshold 0.5 until calibrated."""
    if units <= 0:
        coef, intercept = fit(features, labels, c, seed, weights)
        return LinearHead(coef, intercept, 0.5)
    hidden, coef, intercept = fit_mlp(features, labels, units, alpha, seed, weights)
    return LinearHead(coef, intercept, 0.5, hidden=hidden)


def to_json(head: LinearHead) -> dict[str, Any]:
    raw: dict[str, Any] = {"format": HEAD_FORMAT if head.hidden is None else MLP_FORMAT,
                           "dim": head.dim, "intercept": head.intercept,
                           "threshold": head.threshold, "coef": _numbers(head.coef),
                           "meta": head.meta}
    if head.hidden is not None:
        raw["hidden"] = {"weights": _numbers(head.hidden.weights),
                         "bias": _numbers(head.hidden.bias)}
    return raw


def _hidden_from_json(raw: dict[str, Any], where: str) -> HiddenLayer:
    weights = np.asarray(raw["weights"], dtype=np.float64)
    bias = np.asarray(raw["bias"], dtype=np.float64)
    if weights.ndim != 2 or bias.shape != (weights.shape[1],):
        raise HeadError(f"{where}: hidden weights {weights.shape} and bias {bias.shape} "
                        "do not fit together")
    return HiddenLayer(weights, bias)


def from_json(raw: dict[str, Any], where: str = "<head>") -> LinearHead:
    try:
        if raw["format"] not in (HEAD_FORMAT, MLP_FORMAT):
            raise HeadError(f"{where}: format {raw['format']!r}, expected {HEAD_FORMAT!r} "
                            f"or {MLP_FORMAT!r}")
        hidden = (_hidden_from_json(raw["hidden"], where) if raw["format"] == MLP_FORMAT
                  else None)
        coef = np.asarray(raw["coef"], dtype=np.float64)
        inputs = coef.shape[0] if hidden is None else hidden.weights.shape[1]
        dim = coef.shape[0] if hidden is None else hidden.weights.shape[0]
        if coef.ndim != 1 or coef.shape[0] != inputs or dim != int(raw["dim"]):
            raise HeadError(f"{where}: coef has shape {coef.shape}, dim says {raw['dim']}")
        threshold = float(raw["threshold"])
        if not 0.0 <= threshold <= 1.0:
            raise HeadError(f"{where}: threshold {threshold} outside [0, 1]")
        return LinearHead(coef, float(raw["intercept"]), threshold, dict(raw.get("meta", {})),
                          hidden)
    except (KeyError, TypeError, ValueError) as exc:
        raise HeadError(f"{where}: not a head file: {exc}") from exc


def save(head: LinearHead, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(to_json(head), indent=1) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def load(path: Path) -> LinearHead:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise HeadError(f"no model at {path}") from exc
    except (OSError, ValueError) as exc:
        raise HeadError(f"cannot read {path}: {exc}") from exc
    if not isinstance(raw, dict):
        raise HeadError(f"{path}: expected a JSON object")
    return from_json(raw, str(path))


_CACHE: dict[Path, tuple[int, LinearHead]] = {}
_CACHE_LOCK = threading.Lock()


def load_cached(path: Path) -> LinearHead | None:
    """The head at ``path``, read again only when the file changes (a retrained head takes
    effect without a restart, and an unchanged one costs a ``stat`` per call); None when there
    is no file. Raises :class:`HeadError` for a file that is not a head."""
    try:
        mtime = path.stat().st_mtime_ns
    except OSError:
        return None
    with _CACHE_LOCK:
        cached = _CACHE.get(path)
        if cached is None or cached[0] != mtime:
            cached = (mtime, load(path))
            _CACHE[path] = cached
        return cached[1]


def head_path(model: str | None, state_dir: Path | None, file_name: str,
              packaged: Path) -> Path:
    """Which head file a check uses: the policy's ``model``, else the one ``customllm
    guardrails train`` wrote in the state folder, else the one shipped in the package (so a
    user's retraining takes effect without editing any policy)."""
    if model:
        return Path(model).expanduser()
    if state_dir is not None:
        trained = state_dir / "guardrails" / file_name
        if trained.is_file():
            return trained
    return packaged


def max_over_views(head: LinearHead, views: Sequence[Sequence[str]],
                   embed: Any) -> np.ndarray:  # noqa: ANN401 - an EmbedFn
    """One score per text: the highest over its views (the text, its de-obfuscated skeleton,
    its sentences, decoded payloads...). All views go to the encoder in one batch, which is
    several times cheaper than one call per view."""
    flat = [v for per_text in views for v in per_text]
    if not flat:
        return np.zeros(len(views))
    probs = head.proba(np.asarray(embed(flat)))
    out = np.zeros(len(views))
    start = 0
    for i, per_text in enumerate(views):
        out[i] = float(probs[start:start + len(per_text)].max()) if per_text else 0.0
        start += len(per_text)
    return out
