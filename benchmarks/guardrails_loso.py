"""Prompt injection, leave-one-source-out: train on every source but one, report on that one.

Why: k-fold splits of one data set share its authors, templates and topics, so they flatter
any model. Holding out a whole source (a public data set, the project's seed attacks, its
hand-written attacks, its hard negatives, ordinary SQuAD questions) measures what a deployment
meets: phrasings nobody trained on. Thresholds are calibrated on out-of-fold scores of the
*training* sources only (the same procedure as the shipped head), never on the held-out one.

Methods, all in the same run on the same held-out texts:

- ``rules``: the rule layer (``services.common.injection``), untrained, at the policy threshold;
- ``tfidf_lr``: naive learned baseline, TF-IDF word 1–2-grams + char 2–5-grams with a
  class-balanced logistic regression, calibrated the same way as the head;
- ``head``: the MiniLM embedding head, scored over its views (as the check runs);
- ``similarity``: nearest known attack (the training sources' attacks), cosine over the same
  views with the carrier discount, at the policy threshold: exactly what the pgvector query
  computes, with exact rather than HNSW search;
- combinations: ``rules+tfidf_lr`` (baseline system), ``rules+head`` and
  ``rules+head+similarity`` (the default policy).

The similarity layer is also measured in the role it is kept for: an operator confirms an
attack (``customllm guardrails attacks add``) and its disguised repeats must be stopped before
any retraining. There every source's attacks are in the corpus (``confirmed``), and what is
scored is their disguised forms, plus every benign text for false positives.

Every held-out text is also scored in five disguises (homoglyphs, spaced letters, leetspeak,
zero-width characters, base64).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from services.common import linear_head
from services.common.linear_head import LinearHead
from services.guardrails import attack_corpus, classifier, head_training
from services.guardrails.attack_corpus import EmbedFn
from services.guardrails.head_training import Embedded
from services.guardrails.sources import Source

SINGLE = ("rules", "tfidf_lr", "head", "similarity")
COMBOS = {"rules+tfidf_lr": ("rules", "tfidf_lr"), "rules+head": ("rules", "head"),
          "rules+head+similarity": ("rules", "head", "similarity")}
METHODS = SINGLE + tuple(COMBOS)


def source_parser(description: str, out: Path) -> argparse.ArgumentParser:
    """The arguments of an experiment over the injection sources (``sources.injection_sources``)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--injections", type=Path, required=True)
    parser.add_argument("--squad", type=Path, required=True)
    parser.add_argument("--pii", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=out)
    return parser


def labelled(sources: dict[str, Source]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Every source's texts, their labels, and the source each came from."""
    texts = [t for s in sources.values() for t in s.texts]
    labels = np.asarray([label for s in sources.values() for label in s.labels])
    owner = np.asarray([n for n, s in sources.items() for _ in s.texts])
    return texts, labels, owner


def _tfidf_fold(train_texts: list[str], train_y: np.ndarray,
                seed: int = 0) -> tuple[Any, float]:
    """The TF-IDF baseline fitted on the training sources, and its threshold (out-of-fold on
    those sources at the head's false-positive budget)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import FeatureUnion, make_pipeline

    def build() -> Any:  # noqa: ANN401 - a scikit-learn Pipeline
        features = FeatureUnion([
            ("words", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)),
            ("chars", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5),
                                      sublinear_tf=True, max_features=100_000))])
        return make_pipeline(features, LogisticRegression(
            C=10.0, class_weight="balanced", max_iter=3000, random_state=seed))

    oof = np.zeros(len(train_texts))
    texts = np.asarray(train_texts, dtype=object)
    for tr, te in StratifiedKFold(5, shuffle=True, random_state=seed).split(texts, train_y):
        oof[te] = build().fit(list(texts[tr]), train_y[tr]).predict_proba(list(texts[te]))[:, 1]
    threshold = linear_head.threshold_for_fpr(train_y, oof, classifier.TARGET_FPR)
    return build().fit(train_texts, train_y), threshold


def _similarity(attack_texts: list[str], attack_vectors: np.ndarray,
                queries: list[list[str]], query_vectors: list[np.ndarray]) -> np.ndarray:
    """Best carrier-discounted cosine to any known attack over each text's views."""
    out = np.zeros(len(queries))
    for i, (views, vectors) in enumerate(zip(queries, query_vectors, strict=True)):
        if not views:
            continue
        sims = vectors @ attack_vectors.T  # views × attacks
        best = 0.0
        for v, row in enumerate(sims):
            for a in np.argsort(-row)[:3]:
                discount = attack_corpus.carrier_discount(views[v], attack_texts[a])
                best = max(best, float(row[a]) * discount)
        out[i] = best
    return out


def _rules(texts: Sequence[str]) -> np.ndarray:
    from services.common.injection import injection_score
    from services.common.text_normalize import normalize

    return np.asarray([injection_score(normalize(t).text).score for t in texts])


def _rates(y: np.ndarray, fired: np.ndarray, scores: np.ndarray | None) -> dict[str, Any]:
    from sklearn.metrics import roc_auc_score

    pos, neg = y == 1, y == 0
    return {"n": int(len(y)), "attacks": int(pos.sum()),
            "detection_rate": round(float(fired[pos].mean()), 4) if pos.any() else None,
            "fpr": round(float(fired[neg].mean()), 4) if neg.any() else None,
            "roc_auc": (round(float(roc_auc_score(y, scores)), 4)
                        if scores is not None and pos.any() and neg.any() else None)}


def run(sources: dict[str, Source], embed: EmbedFn, rules_threshold: float,
        similarity_threshold: float, disguises: dict[str, Callable[[str], str]],
        progress: Callable[[str], None] = lambda _m: None) -> dict[str, Any]:
    names = list(sources)
    texts, y, owner = labelled(sources)
    kinds = [k for s in sources.values() for k in s.kinds]
    variants = {"plain": texts, **{d: [fn(t) for t in texts] for d, fn in disguises.items()}}
    embedded: dict[str, Embedded] = {}
    views: dict[str, list[list[str]]] = {}
    for v, vtexts in variants.items():
        progress(f"embedding views ({v})")
        views[v] = [classifier.views(t) for t in vtexts]
        embedded[v] = head_training.embed_texts(vtexts, embed, classifier.views)
    rules = {v: _rules(vtexts) for v, vtexts in variants.items()}
    scores = {v: {m: np.zeros(len(texts)) for m in SINGLE} for v in variants}
    thresholds: dict[str, dict[str, float]] = {}
    for held in names:
        progress(f"held out: {held}")
        test = np.flatnonzero(owner == held)
        train = np.flatnonzero(owner != held)
        plain = embedded["plain"]
        train_data = Embedded(plain.whole[train], [plain.view_vectors[i] for i in train])
        report = head_training.cross_validate(train_data, y[train], 5, classifier.C,
                                              classifier.TARGET_FPR)
        coef, intercept = linear_head.fit(plain.whole[train], y[train], classifier.C)
        head = LinearHead(coef, intercept, report.threshold)
        attack_rows = [i for i in train if y[i] == 1]
        attack_texts = [views["plain"][i][0] if views["plain"][i] else "" for i in attack_rows]
        attack_vectors = plain.whole[attack_rows]
        tfidf, tfidf_threshold = _tfidf_fold([texts[i] for i in train], y[train])
        for v, vtexts in variants.items():
            scores[v]["head"][test] = head_training.score_embedded(head, embedded[v], test)
            scores[v]["rules"][test] = rules[v][test]
            scores[v]["similarity"][test] = _similarity(
                attack_texts, attack_vectors, [views[v][i] for i in test],
                [embedded[v].view_vectors[i] for i in test])
            scores[v]["tfidf_lr"][test] = tfidf.predict_proba([vtexts[i] for i in test])[:, 1]
        thresholds[held] = {"head": round(head.threshold, 4), "tfidf_lr": round(tfidf_threshold, 4),
                            "rules": rules_threshold, "similarity": similarity_threshold}

    def fired(v: str, rows: np.ndarray) -> dict[str, np.ndarray]:
        out = {}
        for m in SINGLE:
            per_row = np.asarray([thresholds[owner[i]][m] for i in rows])
            out[m] = scores[v][m][rows] >= per_row
        for combo, parts in COMBOS.items():
            out[combo] = np.any([out[p] for p in parts], axis=0)
        return out

    def table(v: str, rows: np.ndarray) -> dict[str, Any]:
        f = fired(v, rows)
        return {m: _rates(y[rows], f[m], scores[v][m][rows] if m in SINGLE else None)
                for m in METHODS}

    per_source = {held: table("plain", np.flatnonzero(owner == held)) for held in names}
    per_kind: dict[str, dict[str, Any]] = {}
    for held in names:
        rows = np.flatnonzero(owner == held)
        for kind in sorted({kinds[i] for i in rows}):
            kind_rows = np.asarray([i for i in rows if kinds[i] == kind])
            per_kind[f"{held}/{kind}"] = table("plain", kind_rows)
    all_rows = np.arange(len(texts))
    disguised = {v: table(v, all_rows) for v in variants if v != "plain"}
    confirmed = _confirmed(texts, y, views, embedded, scores, thresholds, owner,
                           similarity_threshold)
    roc = {m: {"y": y.tolist(), "scores": [round(float(s), 5) for s in scores["plain"][m]]}
           for m in SINGLE}
    return {"sources": {n: {"texts": len(s.texts), "attacks": sum(s.labels)}
                        for n, s in sources.items()},
            "thresholds": thresholds, "per_source": per_source, "per_kind": per_kind,
            "pooled": table("plain", all_rows), "disguised": disguised,
            "confirmed": confirmed, "roc": roc}


def _confirmed(texts: list[str], y: np.ndarray, views: dict[str, list[list[str]]],
               embedded: dict[str, Embedded], scores: dict[str, dict[str, np.ndarray]],
               thresholds: dict[str, dict[str, float]], owner: np.ndarray,
               similarity_threshold: float) -> dict[str, Any]:
    """Every attack confirmed into the corpus; its disguised forms scored by the similarity
    layer, and what that adds to rules+head (held-out scores) on the same texts."""
    attack_rows = np.flatnonzero(y == 1)
    attack_texts = [views["plain"][i][0] if views["plain"][i] else "" for i in attack_rows]
    attack_vectors = embedded["plain"].whole[attack_rows]
    out: dict[str, Any] = {}
    for v in views:
        if v == "plain":
            continue
        rows = np.arange(len(texts))
        sim = _similarity(attack_texts, attack_vectors, views[v],
                          embedded[v].view_vectors) >= similarity_threshold
        base = np.asarray([scores[v][m][i] >= thresholds[owner[i]][m] for i in rows
                           for m in ("rules", "head")]).reshape(len(rows), 2).any(axis=1)
        out[v] = {"similarity": _rates(y, sim, None), "rules+head": _rates(y, base, None),
                  "rules+head+similarity": _rates(y, base | sim, None)}
    return out
