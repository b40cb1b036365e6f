"""Hate vs. offensive: the hate head against baselines, on data it was not tuned on.

- Tweets (Davidson et al.): a stratified 80/20 split (seed 0). Heads are trained on the 80%
  and their threshold calibrated on out-of-fold scores of that 80%; the 20% is only reported.
- The project's functional cases (``services/guardrails/data/hate_functional.jsonl``): hate
  without slurs, threats, dehumanization, slurs; and the hard non-hateful cases (slurs quoted
  in counter-speech, negated hate, neutral mentions of identity groups, profanity that is not
  hate). No head is ever trained on them.
- Two heads: trained on the tweets only, and the shipped recipe (the tweets plus the
  project's hand-written *training* cases, ``hate_train.jsonl``, weighted
  ``hate.PROJECT_WEIGHT``).

Baselines in the same run: the toxicity check (``alt-profanity-check``, the platform's only
abuse detector before this) at its policy threshold, and TF-IDF + logistic regression trained
and calibrated exactly like the head.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from services.guardrails import hate, head_training, linear_head
from services.guardrails.attack_corpus import EmbedFn
from services.guardrails.linear_head import LinearHead
from services.guardrails.sources import Source

HARD_NEGATIVE_KINDS = ("counter_quote", "negated", "neutral_identity", "offensive_not_hate")


def _tfidf(train_texts: list[str], train_y: np.ndarray) -> tuple[Any, float]:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_predict
    from sklearn.pipeline import make_pipeline

    def build() -> Any:  # noqa: ANN401 - a scikit-learn Pipeline
        return make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True,
                                             min_df=2),
                             LogisticRegression(C=3.0, class_weight="balanced", max_iter=3000))

    cleaned = [hate.clean(t) for t in train_texts]
    oof = cross_val_predict(build(), cleaned, train_y, cv=5, method="predict_proba")[:, 1]
    threshold = linear_head.threshold_for_fpr(train_y, oof, hate.TARGET_FPR)
    return build().fit(cleaned, train_y), threshold


def _head(data: head_training.Embedded, rows: np.ndarray, y: np.ndarray,
          weights: np.ndarray | None = None) -> LinearHead:
    sub = head_training.Embedded(data.whole[rows], [data.view_vectors[i] for i in rows])
    w = None if weights is None else weights[rows]
    report = head_training.cross_validate(sub, y[rows], 5, hate.C, hate.TARGET_FPR, weights=w)
    coef, intercept = linear_head.fit(data.whole[rows], y[rows], hate.C, weights=w)
    return LinearHead(coef, intercept, report.threshold)


def _rates(y: np.ndarray, fired: np.ndarray, kinds: list[str]) -> dict[str, Any]:
    pos, neg = y == 1, y == 0
    hard = np.asarray([k in HARD_NEGATIVE_KINDS for k in kinds])
    out: dict[str, Any] = {
        "detection_rate": round(float(fired[pos].mean()), 4) if pos.any() else None,
        "fpr": round(float(fired[neg].mean()), 4) if neg.any() else None}
    if hard.any():
        out["fpr_hard"] = round(float(fired[hard & neg].mean()), 4)
    for kind in sorted(set(kinds)):
        mask = np.asarray([k == kind for k in kinds])
        out[kind] = {"n": int(mask.sum()), "flagged": round(float(fired[mask].mean()), 4)}
    return out


def run(tweets: Source, own: Source, functional: Source, embed: EmbedFn,
        toxicity_threshold: float,
        progress: Callable[[str], None] = lambda _m: None) -> dict[str, Any]:
    """``own``: the hand-written training cases; ``functional``: the hand-written test cases."""
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import train_test_split

    from services.guardrails.checks.toxicity import toxicity_scores

    progress("embedding tweets and hand-written cases")
    texts = tweets.texts + own.texts + functional.texts
    y = np.asarray(tweets.labels + own.labels + functional.labels)
    kinds = tweets.kinds + own.kinds + functional.kinds
    data = head_training.embed_texts(texts, embed, hate.views)
    n_tw, n_own = len(tweets.texts), len(own.texts)
    tw_rows = np.arange(n_tw)
    own_rows = np.arange(n_tw, n_tw + n_own)
    fn_rows = np.arange(n_tw + n_own, len(texts))
    weights = np.ones(len(texts))
    weights[own_rows] = hate.PROJECT_WEIGHT
    train, test = train_test_split(tw_rows, test_size=0.2, stratify=y[tw_rows], random_state=0)
    progress("hate heads: tweets only, and the shipped recipe (tweets + own cases)")
    heads = {"head (tweets only)": _head(data, train, y),
             "head (shipped recipe)": _head(data, np.concatenate([train, own_rows]), y,
                                            weights)}
    tfidf, tfidf_threshold = _tfidf([texts[i] for i in train], y[train])
    toxicity = np.asarray(toxicity_scores(texts))

    def evaluate(rows: np.ndarray) -> dict[str, Any]:
        ks = [kinds[i] for i in rows]
        scored = {name: (head_training.score_embedded(h, data, rows), h.threshold)
                  for name, h in heads.items()}
        scored["tfidf_lr"] = (tfidf.predict_proba([hate.clean(texts[i]) for i in rows])[:, 1],
                              tfidf_threshold)
        scored["toxicity"] = (toxicity[rows], toxicity_threshold)
        out = {}
        for name, (s, t) in scored.items():
            out[name] = _rates(y[rows], s >= t, ks)
            if 0 < y[rows].sum() < len(rows):
                out[name]["roc_auc"] = round(float(roc_auc_score(y[rows], s)), 4)
        return out

    roc = {"y": y[test].tolist()}
    for name, h in heads.items():
        roc[name] = [round(float(v), 5) for v in head_training.score_embedded(h, data, test)]
    roc["tfidf_lr"] = [round(float(v), 5) for v in tfidf.predict_proba(
        [hate.clean(texts[i]) for i in test])[:, 1]]
    roc["toxicity"] = [round(float(v), 5) for v in toxicity[test]]
    return {"tweets": {"train": int(len(train)), "test": int(len(test)),
                       "test_hate": int(y[test].sum())},
            "own_training_cases": {"cases": n_own, "hate": int(y[own_rows].sum()),
                                   "weight": hate.PROJECT_WEIGHT},
            "functional_cases": {"cases": int(len(fn_rows)), "hate": int(y[fn_rows].sum())},
            "thresholds": {**{n: round(h.threshold, 4) for n, h in heads.items()},
                           "tfidf_lr": round(tfidf_threshold, 4),
                           "toxicity": toxicity_threshold},
            "tweet_test": evaluate(test), "functional": evaluate(fn_rows), "roc": roc}
