"""Experiment: the injection head's sentence views pooled from the window's own encoder pass.

    .venv/bin/python -m benchmarks.guardrails_span_views \
        --injections ../shared/datasets/prompt_injections_train.jsonl \
        --squad ../shared/datasets/squad_v11_train_11articles.json \
        --pii ../shared/datasets/pii_presidio_small.json

Why: the encoder is three quarters of input screening, and for a text of a few sentences the
sentence views (``classifier.views``) are encoded again after the whole text, nearly doubling
its tokens. The window's token states already cover every sentence, so a sentence's vector
could be the mean of its own tokens there. This measures what that costs in detection, before
anything is built:

- ``separate``: as the check runs (every view encoded on its own);
- ``pooled``: sentence views pooled from their window's tokens;
- ``cascade:D``: pooled first, a sentence view encoded on its own only when its pooled score is
  within D of the threshold (and no window already fired).

Leave-one-source-out over the project's injection sources, the learned head alone (no rules,
no similarity layer), thresholds calibrated on the training sources' out-of-fold scores as the
shipped head's are. Also: the tokens each scheme runs on the latency benchmark's texts up to
2,000 characters (``guardrails_latency.latency_texts``), and their encoder time on one thread.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.guardrails_latency import latency_texts, percentile
from benchmarks.guardrails_loso import labelled, source_parser
from services.common import linear_head
from services.common.linear_head import LinearHead
from services.common.text_normalize import normalize
from services.guardrails import classifier, head_training, sources
from services.guardrails.head_training import Embedded

OUT = Path("docs/benchmarks/experiments/guardrails_span_views.json")
DELTAS = (0.1, 0.2, 0.3)


def window_count(text: str, views: Sequence[str]) -> int:
    """How many of ``views`` (they come first) are windows of the text."""
    read = classifier.readable(normalize(text).text.strip())
    return max(1, sum(1 for w in (classifier.windows(read) if read else []) if w in views))


def pooled_views(model: Any, text: str) -> np.ndarray:  # noqa: ANN401 - OnnxSentenceEncoder
    """The text's view vectors, windows encoded and sentences mean-pooled from the tokens of
    the window that holds them (a sentence in no window is encoded on its own)."""
    views = classifier.views(text) or [""]
    windows = views[:window_count(text, views)]
    states = []
    for encoding in model.tokenizer.encode_batch(windows):
        ids = np.asarray([encoding.ids], dtype=np.int64)
        run = model.session.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids),
                                       "token_type_ids": np.zeros_like(ids)})[0][0]
        states.append((run, encoding.offsets, encoding.special_tokens_mask))
    vectors = []
    for view in views:
        if view in windows:
            tokens, _, _ = states[windows.index(view)]
            vectors.append(_unit(tokens.mean(axis=0)))
            continue
        holder = next((i for i, w in enumerate(windows) if view in w), None)
        if holder is None:
            vectors.append(model.encode([view])[0])
            continue
        tokens, offsets, special = states[holder]
        start = windows[holder].find(view)
        inside = np.asarray([not s and a >= start and b <= start + len(view)
                             for (a, b), s in zip(offsets, special, strict=True)])
        vectors.append(_unit(tokens[inside].mean(axis=0)) if inside.any()
                       else model.encode([view])[0])
    return np.asarray(vectors, dtype=np.float32)


def _unit(vector: np.ndarray) -> np.ndarray:
    return vector / max(float(np.linalg.norm(vector)), 1e-12)


def loso_heads(separate: Embedded, labels: np.ndarray,
               owner: np.ndarray) -> dict[str, LinearHead]:
    """One head per held-out source, fitted and calibrated on the others (separate vectors:
    the head reads the whole-text view, the same in every scheme)."""
    heads = {}
    for held in dict.fromkeys(owner.tolist()):
        train = np.flatnonzero(owner != held)
        data = Embedded(separate.whole[train], [separate.view_vectors[i] for i in train])
        report = head_training.cross_validate(data, labels[train], 5, classifier.C,
                                              classifier.TARGET_FPR)
        coef, intercept = linear_head.fit(separate.whole[train], labels[train], classifier.C)
        heads[held] = LinearHead(coef, intercept, report.threshold)
    return heads


def scheme_scores(heads: dict[str, LinearHead], owner: np.ndarray, windows: list[int],
                  separate: Embedded, pooled: list[np.ndarray],
                  delta: float | None) -> tuple[np.ndarray, np.ndarray, int]:
    """(score, threshold, sentence views encoded on their own) per text. ``delta`` None:
    every view separate; -inf: every sentence pooled."""
    scores, thresholds, encoded = np.zeros(len(owner)), np.zeros(len(owner)), 0
    for i, held in enumerate(owner):
        head = heads[held]
        exact = head.proba(separate.view_vectors[i])
        thresholds[i] = head.threshold
        if delta is None or len(exact) == windows[i]:
            scores[i] = exact.max()
            continue
        estimate = head.proba(pooled[i])
        best_window = exact[:windows[i]].max()
        best_sentence = estimate[windows[i]:].max()
        if best_window < head.threshold and best_sentence >= head.threshold - delta:
            encoded += 1
            best_sentence = exact[windows[i]:].max()
        scores[i] = max(best_window, best_sentence)
    return scores, thresholds, encoded


def rates(fired: np.ndarray, labels: np.ndarray, rows: np.ndarray) -> dict[str, float | None]:
    attacks, benign = rows & (labels == 1), rows & (labels == 0)
    return {"detection": round(float(fired[attacks].mean()), 4) if attacks.any() else None,
            "false_positives": round(float(fired[benign].mean()), 4) if benign.any() else None}


def encoder_cost(model: Any, texts: Sequence[str]) -> dict[str, Any]:  # noqa: ANN401
    """Tokens and one-thread encoder ms per text: every view, or the windows only (what a
    pooled sentence view costs: nothing more)."""
    def timed(view_sets: list[list[str]]) -> tuple[list[float], int]:
        times, tokens = [], 0
        for views in view_sets:
            tokens += sum(len(e.ids) for e in model.tokenizer.encode_batch(views))
            started = time.perf_counter()
            model.encode(views)
            times.append((time.perf_counter() - started) * 1000)
        return times, tokens

    every = [classifier.views(t) or [""] for t in texts]
    windows = [v[:window_count(t, v)] for t, v in zip(texts, every, strict=True)]
    timed(every[:10])  # warm
    every_ms, every_tokens = timed(every)
    window_ms, window_tokens = timed(windows)
    return {"texts": len(texts),
            "every_view": {"tokens": every_tokens, "p50_ms": round(percentile(every_ms, 50), 2),
                           "p95_ms": round(percentile(every_ms, 95), 2)},
            "windows_only": {"tokens": window_tokens,
                             "p50_ms": round(percentile(window_ms, 50), 2),
                             "p95_ms": round(percentile(window_ms, 95), 2)}}


def main(argv: Sequence[str] | None = None) -> None:
    args = source_parser(__doc__.split("\n")[0], OUT).parse_args(argv)
    from services.guardrails.encoder import head_encoder

    encoder = head_encoder()
    encoder.warm_up()
    model = encoder._model  # noqa: SLF001 - the ONNX session and tokenizer themselves
    named = sources.injection_sources(args.injections, args.squad, args.pii)
    texts, labels, owner = labelled(named)
    separate = head_training.embed_texts(texts, model.encode, classifier.views)
    pooled = [pooled_views(model, t) for t in texts]
    windows = [window_count(t, classifier.views(t) or [""]) for t in texts]
    heads = loso_heads(separate, labels, owner)
    schemes: dict[str, float | None] = {"separate": None, "pooled": float("-inf"),
                                        **{f"cascade:{d}": d for d in DELTAS}}
    results: dict[str, Any] = {}
    for name, delta in schemes.items():
        scores, thresholds, encoded = scheme_scores(heads, owner, windows, separate, pooled,
                                                    delta)
        fired = scores >= thresholds
        from sklearn.metrics import roc_auc_score

        results[name] = {
            "pooled": {**rates(fired, labels, np.ones(len(texts), bool)),
                       "auc": round(float(roc_auc_score(labels, scores)), 4)},
            "per_source": {n: rates(fired, labels, owner == n) for n in named},
            "sentence_views_encoded": encoded,
            "texts_with_sentence_views": sum(len(v) > w for v, w in
                                             zip(separate.view_vectors, windows, strict=True))}
        _print(name, results[name])
    short, _ = latency_texts(args.injections, args.pii, args.squad, per_band=30)
    report = {"command": "python -m benchmarks.guardrails_span_views --injections "
                         f"{args.injections} --squad {args.squad} --pii {args.pii}",
              "sources": {n: len(s.texts) for n, s in named.items()},
              "schemes": results, "encoder_on_latency_texts": encoder_cost(model, short)}
    print(json.dumps(report["encoder_on_latency_texts"], indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))


def _print(name: str, result: dict[str, Any], out: Callable[[str], None] = print) -> None:
    pooled = result["pooled"]
    out(f"{name}: detection {pooled['detection']:.3f}, false positives "
        f"{pooled['false_positives']:.3f}, AUC {pooled['auc']:.4f}; sentence views encoded "
        f"{result['sentence_views_encoded']}/{result['texts_with_sentence_views']}")
    for source, row in result["per_source"].items():
        out(f"   {source}: {row}")


if __name__ == "__main__":
    main()
