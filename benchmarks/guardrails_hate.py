"""Hate vs. offensive: the hate head against baselines, on data it was not tuned on.

    .venv/bin/python -m benchmarks.guardrails_hate \\
        --tweets ../shared/datasets/hate_offensive_tweets.jsonl \\
        --squad ../shared/datasets/squad_v11_train_11articles.json \\
        --dev ../shared/datasets/squad_v2_dev_5articles.json \\
        --injections ../shared/datasets/prompt_injections_train.jsonl

(``benchmarks.guardrails`` runs the same as part of the whole guardrails benchmark.)

- Tweets (Davidson et al.): a stratified 80/20 split (seed 0). Heads are trained on the 80%
  and their threshold calibrated on out-of-fold scores of that 80%; the 20% is only reported.
- The project's functional cases (``services/guardrails/data/hate_functional.jsonl``): hate
  without slurs, threats, dehumanization, slurs; and the hard non-hateful cases (slurs quoted
  in counter-speech, negated hate, neutral mentions of identity groups, profanity that is not
  hate). No head is ever trained on them, and no recipe is chosen on them.
- **Choosing the recipe** (head shape, templated cases or not) happens first, without the
  functional cases: two template-disjoint halves of ``hate_templates.json``, each head trained
  on the tweets' 80%, the hand-written training cases and one half, and scored on the other
  half's cases (detection minus false positives on its non-hateful kinds). The shipped recipe
  (``hate.HIDDEN_UNITS``, templated cases at ``hate.PROJECT_WEIGHT``) is the one that wins it.
- Heads on the functional cases, in the same run: linear on the tweets only; the previous
  shipped recipe (linear, tweets + hand-written cases); linear with the templated cases; the
  hidden layer without them and with them; and the shipped recipe, which adds 300 ordinary
  questions as negatives (as the injection head has): every head is also scored on benign
  texts none trained on (another SQuAD file's questions, the injection set's benign prompts),
  the share flagged, since a hate check that flags "How do refugees apply for asylum?" is
  one nobody keeps switched on.

Baselines in the same run: the toxicity check (``alt-profanity-check``, the platform's only
abuse detector before this) at its policy threshold, and TF-IDF + logistic regression trained
and calibrated exactly like the heads.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from services.common import linear_head
from services.common.linear_head import LinearHead
from services.guardrails import hate, head_training
from services.guardrails.attack_corpus import EmbedFn
from services.guardrails.sources import Source

HARD_NEGATIVE_KINDS = ("counter_quote", "negated", "neutral_identity", "offensive_not_hate")
# The templated non-hateful kinds, for choosing a recipe on held-out templates.
TEMPLATE_HARD_KINDS = ("counter_quote", "negated", "neutral_identity", "positive_identity",
                       "abuse_not_protected")
SHIPPED = "shipped: hidden layer, + templated + questions"


@dataclass(frozen=True)
class Recipe:
    units: int  # hidden layer size, 0: linear
    templated: bool = False
    hand_written: bool = True
    questions: bool = False  # ordinary questions as negatives


RECIPES: dict[str, Recipe] = {
    "linear, tweets only": Recipe(0, hand_written=False),
    "linear, + hand-written (previous recipe)": Recipe(0),
    "linear, + templated": Recipe(0, templated=True),
    "hidden layer, + hand-written": Recipe(hate.HIDDEN_UNITS),
    "hidden layer, + templated": Recipe(hate.HIDDEN_UNITS, templated=True),
    SHIPPED: Recipe(hate.HIDDEN_UNITS, templated=True, questions=True),
}


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
          weights: np.ndarray, units: int) -> LinearHead:
    """Trained and calibrated exactly as ``hate.train`` does (``head_training.train``), on
    ``rows`` only."""
    sub = head_training.Embedded(data.whole[rows], [data.view_vectors[i] for i in rows])
    head, _ = head_training.train(sub, y[rows], hate.C, hate.TARGET_FPR, 0, 5, {},
                                  weights=weights[rows], units=units)
    return head


def _rates(y: np.ndarray, fired: np.ndarray, kinds: list[str],
           hard_kinds: tuple[str, ...] = HARD_NEGATIVE_KINDS) -> dict[str, Any]:
    pos, neg = y == 1, y == 0
    hard = np.asarray([k in hard_kinds for k in kinds])
    out: dict[str, Any] = {
        "detection_rate": round(float(fired[pos].mean()), 4) if pos.any() else None,
        "fpr": round(float(fired[neg].mean()), 4) if neg.any() else None}
    if hard.any():
        out["fpr_hard"] = round(float(fired[hard & neg].mean()), 4)
    for kind in sorted(set(kinds)):
        mask = np.asarray([k == kind for k in kinds])
        out[kind] = {"n": int(mask.sum()), "flagged": round(float(fired[mask].mean()), 4)}
    return out


def _stack(*sources: Source) -> tuple[list[str], np.ndarray, list[str]]:
    return ([t for s in sources for t in s.texts],
            np.asarray([y for s in sources for y in s.labels]),
            [k for s in sources for k in s.kinds])


def select(tweets_train: Source, own: Source, halves: tuple[Source, Source], embed: EmbedFn,
           progress: Callable[[str], None] = lambda _m: None) -> dict[str, Any]:
    """Each recipe scored on held-out *templates*: a recipe with templated cases trained with
    one half and scored on the other, both ways; one without them trained once and scored on
    both. The functional test cases play no part."""
    out: dict[str, Any] = {}
    for name, recipe in RECIPES.items():
        if not recipe.hand_written or recipe.questions:  # questions: judged on questions
            continue
        runs = []
        for k in (0, 1) if recipe.templated else (None,):
            parts = (tweets_train, own) + ((halves[k],) if k is not None else ())
            held_out = [halves[1 - k]] if k is not None else list(halves)
            texts, y, _ = _stack(*parts)
            scored_texts, scored_y, _ = _stack(*held_out)
            data = head_training.embed_texts(texts + scored_texts, embed, hate.views)
            weights = np.full(len(texts) + len(scored_texts), hate.PROJECT_WEIGHT)
            weights[:len(tweets_train.texts)] = 1.0
            progress(f"choosing the recipe: {name}" + (f", template half {k + 1} of 2"
                                                       if k is not None else ""))
            head = _head(data, np.arange(len(texts)), np.concatenate([y, scored_y]), weights,
                         recipe.units)
            scores = head_training.score_embedded(
                head, data, np.arange(len(texts), len(texts) + len(scored_texts)))
            start = 0
            for source in held_out:  # one figure per held-out half, as for the others
                part = scores[start:start + len(source.texts)]
                start += len(source.texts)
                runs.append(_rates(np.asarray(source.labels), part >= head.threshold,
                                   source.kinds, TEMPLATE_HARD_KINDS))
        detection = float(np.mean([r["detection_rate"] for r in runs]))
        fpr_hard = float(np.mean([r["fpr_hard"] for r in runs]))
        out[name] = {"detection_rate": round(detection, 4), "fpr_hard": round(fpr_hard, 4),
                     "margin": round(detection - fpr_hard, 4)}
    out["chosen"] = max(out, key=lambda n: out[n]["margin"])
    return out


def run(tweets: Source, own: Source, templated: Source, questions: Source, functional: Source,
        embed: EmbedFn, toxicity_threshold: float,
        ordinary: dict[str, list[str]] | None = None,
        halves: tuple[Source, Source] | None = None,
        progress: Callable[[str], None] = lambda _m: None) -> dict[str, Any]:
    """``own``: the hand-written training cases; ``templated``: the cases filled in from the
    templates; ``questions``: ordinary questions, negatives for training; ``functional``: the
    hand-written test cases. ``ordinary``: held-out benign texts by name (other questions than
    the training ones), reported as the share flagged. ``halves``: template-disjoint halves of
    the templated cases, to choose the recipe on first (skipped when None)."""
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import train_test_split

    from services.guardrails.checks.toxicity import toxicity_scores

    progress("embedding tweets and project cases")
    texts, y, kinds = _stack(tweets, own, templated, questions, functional)
    data = head_training.embed_texts(texts, embed, hate.views)
    bounds = np.cumsum([0] + [len(s.texts) for s in (tweets, own, templated, questions,
                                                     functional)])
    tw_rows, own_rows, tpl_rows, q_rows, fn_rows = (np.arange(a, b) for a, b in
                                                     zip(bounds[:-1], bounds[1:], strict=True))
    weights = np.full(len(texts), hate.PROJECT_WEIGHT)
    weights[tw_rows] = 1.0
    train, test = train_test_split(tw_rows, test_size=0.2, stratify=y[tw_rows], random_state=0)
    selection = None
    if halves is not None:
        tweets_train = Source(tweets.name, [tweets.texts[i] for i in train],
                              [tweets.labels[i] for i in train], [tweets.kinds[i] for i in train])
        selection = select(tweets_train, own, halves, embed, progress)
        progress(f"recipe chosen on held-out templates: {selection['chosen']}")
    heads = {}
    for name, recipe in RECIPES.items():
        progress(f"hate head: {name}")
        rows = np.concatenate([train, own_rows if recipe.hand_written else [],
                               tpl_rows if recipe.templated else [],
                               q_rows if recipe.questions else []]).astype(int)
        heads[name] = _head(data, rows, y, weights, recipe.units)
    flagged_ordinary: dict[str, dict[str, Any]] = {}
    for set_name, benign in (ordinary or {}).items():
        benign_data = head_training.embed_texts(benign, embed, hate.views)
        flagged_ordinary[set_name] = {"n": len(benign)} | {
            name: round(float((head_training.score_embedded(h, benign_data, range(len(benign)))
                               >= h.threshold).mean()), 4) for name, h in heads.items()}
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
            "own_training_cases": {"cases": len(own_rows), "hate": int(y[own_rows].sum()),
                                   "weight": hate.PROJECT_WEIGHT},
            "templated_cases": {"cases": len(tpl_rows), "hate": int(y[tpl_rows].sum()),
                                "weight": hate.PROJECT_WEIGHT},
            "question_cases": {"cases": len(q_rows), "weight": hate.PROJECT_WEIGHT},
            "ordinary_flagged": flagged_ordinary,
            "functional_cases": {"cases": int(len(fn_rows)), "hate": int(y[fn_rows].sum())},
            "hidden_units": hate.HIDDEN_UNITS, "selection": selection,
            "thresholds": {**{n: round(h.threshold, 4) for n, h in heads.items()},
                           "tfidf_lr": round(tfidf_threshold, 4),
                           "toxicity": toxicity_threshold},
            "tweet_test": evaluate(test), "functional": evaluate(fn_rows), "roc": roc}


def ordinary_sets(dev: Path | None, injections: Path | None) -> dict[str, list[str]]:
    """Benign texts no head trained on: the questions of another SQuAD file, and the benign
    prompts of the public injection set."""
    from services.guardrails import classifier

    out: dict[str, list[str]] = {}
    if dev is not None:
        squad = json.loads(dev.read_text(encoding="utf-8"))
        out[f"questions of {dev.name}"] = [q["question"] for a in squad["data"]
                                           for p in a["paragraphs"] for q in p["qas"]]
    if injections is not None:
        texts, labels = classifier.read_jsonl(injections)
        out[f"benign prompts of {injections.name}"] = [
            t for t, y in zip(texts, labels, strict=True) if not y]
    return out


def main() -> None:
    import argparse

    from benchmarks.guardrails_report import hate_markdown, hate_plot
    from benchmarks.harness import configure_environment
    from services.guardrails import sources
    from services.guardrails.embed_cache import CachedEmbed
    from services.guardrails.encoder import head_encoder
    from services.guardrails.policy import PACKAGED_POLICIES, load_policy_file

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tweets", type=Path, required=True)
    parser.add_argument("--squad", type=Path, required=True,
                        help="SQuAD JSON whose questions (300, seed 0) train as negatives")
    parser.add_argument("--dev", type=Path, default=None,
                        help="another SQuAD JSON: its questions are held-out ordinary texts")
    parser.add_argument("--injections", type=Path, default=None,
                        help="the public injection set: its benign prompts are held out too")
    parser.add_argument("--cache", type=Path, default=None,
                        help="embedding cache (npz), shared with build_heads")
    parser.add_argument("--encoder", default=None)
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks"))
    args = parser.parse_args()
    configure_environment()
    policy = load_policy_file(PACKAGED_POLICIES / "default.yaml")
    encoder = head_encoder(args.encoder)
    embed = CachedEmbed(encoder.encode, args.cache)
    try:
        results = run(sources.tweets(args.tweets), sources.hate_train(),
                      sources.hate_templated(), sources.squad_questions(args.squad),
                      sources.hate_functional(), embed, policy.input.toxicity.threshold,
                      ordinary=ordinary_sets(args.dev, args.injections),
                      halves=(sources.hate_templated(fold=(0, 2)),
                              sources.hate_templated(fold=(1, 2))),
                      progress=lambda m: print(m, flush=True))
    finally:
        embed.save()
    results["encoder"] = encoder.model_id
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "guardrails_hate.json").write_text(json.dumps(
        {k: v for k, v in results.items() if k != "roc"}, indent=1) + "\n")
    command = ["python -m benchmarks.guardrails_hate", f"--tweets {args.tweets}",
               f"--squad {args.squad}"] + [f"--{k} {v}" for k, v in (
                   ("dev", args.dev), ("injections", args.injections)) if v is not None]
    markdown = "\n".join(["# Hate vs. offensive", "", "    .venv/bin/" + " ".join(command), "",
                          f"Encoder: {encoder.model_id}."] + hate_markdown(results)[3:]) + "\n"
    (args.out / "guardrails_hate.md").write_text(markdown)
    hate_plot(results, args.out / "guardrails_hate.png")
    print(markdown)


if __name__ == "__main__":
    main()
