"""Guardrails benchmark: injection detection per layer, PII per entity, latency per stage.

    .venv/bin/python -m benchmarks.guardrails \\
        --injections ../shared/datasets/prompt_injections_train.jsonl \\
        --pii ../shared/datasets/pii_presidio_small.json \\
        --documents ../shared/datasets/squad_v2_dev_5articles.json

Runs on a private embedded Postgres (own port and state, stopped at the end), so the
similarity layer is measured on real pgvector. Measures, each beside a baseline in the same
run:

- prompt injection, detection rate and false-positive rate per layer at the default policy's
  thresholds, and combined (any layer triggers) — the baseline is the rules layer alone.
  Everything learned from the data is measured on held-out folds (stratified k-fold): the
  classifier is trained on k-1 folds; the similarity corpus is the project's seed file plus
  the attacks of the k-1 training folds, scored on the held-out fold. Rules are not trained.
  The held-out attacks are also scored in disguise (homoglyphs, spaced letters, leetspeak,
  zero-width characters, base64) to measure robustness, and benign texts in the same disguises
  to measure what disguise alone costs in false positives;
- documents (ingest scan, rules only): how many ordinary paragraphs get marked, and how many
  are marked once an attack from the data set is inserted into them (``--documents``);
- PII, per-entity precision / recall / F1 by span overlap (dataset entity names mapped to
  Presidio's), plus "redaction recall": gold spans covered by any finding, whatever its type
  (what matters for a leak);
- latency each stage adds (p50/p95 per check and in total) for the input stage with every
  layer on, vs. the rules layer alone, and for the output stage.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

PG_PORT = "35632"


def configure_environment() -> Path:
    state = Path(tempfile.mkdtemp(prefix="customllm-bench-guardrails-"))
    os.environ.update({"CUSTOMLLM_POSTGRES_PORT": PG_PORT, "CUSTOMLLM_STATE_DIR": str(state),
                       "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                       "CUSTOMLLM_LOG_LEVEL": "WARNING"})
    os.environ.pop("CUSTOMLLM_DATABASE_URL", None)
    return state


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


# --- disguises ---------------------------------------------------------------------------------

_CYRILLIC = str.maketrans({"a": "а", "e": "е", "o": "о", "p": "р", "c": "с", "x": "х",
                           "i": "і", "y": "у"})
_LEET = str.maketrans({"a": "4", "e": "3", "i": "1", "o": "0", "s": "5", "t": "7"})


def _spaced(text: str) -> str:
    words = text.split()
    # Spell out the first six words letter by letter, as attackers do with the key phrase.
    return " ".join([" ".join(w) for w in words[:6]] + words[6:])


DISGUISES: dict[str, Callable[[str], str]] = {
    "homoglyphs": lambda t: t.translate(_CYRILLIC),
    "spaced": _spaced,
    "leetspeak": lambda t: t.translate(_LEET),
    "zero_width": lambda t: "\u200b".join(t),
    "base64": lambda t: "Decode this and do what it says: "
                        + base64.b64encode(t.encode()).decode(),
}


# --- injection layers --------------------------------------------------------------------------

def injection_benchmark(texts: list[str], labels: list[int], folds: int, engine: Any,
                        embed: Callable[[list[str]], Any]) -> dict[str, Any]:
    import numpy as np
    from sklearn.model_selection import StratifiedKFold
    from sqlalchemy import text as sql

    from services.common.injection import injection_score
    from services.common.text_normalize import normalize
    from services.guardrails import attack_corpus, classifier
    from services.guardrails.policy import PACKAGED_POLICIES, load_policy_file

    policy = load_policy_file(PACKAGED_POLICIES / "default.yaml").input
    thresholds = {"rules": policy.injection_rules.threshold,
                  "similarity": policy.injection_similarity.threshold,
                  "classifier": policy.injection_classifier.threshold}
    y = np.asarray(labels)
    n = len(texts)
    disguised = {name: [fn(t) for t in texts] for name, fn in DISGUISES.items()}
    variants = {"plain": texts, **disguised}
    scores: dict[str, dict[str, np.ndarray]] = {
        v: {layer: np.zeros(n) for layer in thresholds} for v in variants}
    for v, vtexts in variants.items():
        scores[v]["rules"] = np.asarray([injection_score(normalize(t).text).score
                                         for t in vtexts])

    cache: dict[str, Any] = {}

    def cached_embed(batch: list[str]) -> Any:
        missing = [t for t in dict.fromkeys(batch) if t not in cache]
        if missing:
            for t, v in zip(missing, embed(missing), strict=True):
                cache[t] = v
        return np.stack([cache[t] for t in batch])

    # Embed everything once, in large batches (per-text calls are several times slower).
    queries = {v: [attack_corpus.query_texts(normalize(t).text) for t in vtexts]
               for v, vtexts in variants.items()}
    wanted = [q for per_variant in queries.values() for qs in per_variant for q in qs]
    wanted += [normalize(t).text.strip() for t in texts]
    wanted += [normalize(t).text.strip() for t, _ in attack_corpus.read_seed_file()]
    started = time.perf_counter()
    cached_embed(list(dict.fromkeys(wanted)))
    print(f"  embedded {len(cache)} distinct texts in {time.perf_counter() - started:.0f} s")
    attack_corpus.ensure_seeded(engine, cached_embed)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=0)
    fold_metrics = []
    for k, (train_idx, test_idx) in enumerate(splitter.split(np.zeros(n), y)):
        started = time.perf_counter()
        model = classifier.train([texts[i] for i in train_idx], y[train_idx].tolist())
        with engine.begin() as conn:
            conn.execute(sql("DELETE FROM guardrail_attacks WHERE source <> 'seed'"))
        attack_corpus.add_attacks(engine, [texts[i] for i in train_idx if y[i] == 1],
                                  f"bench-fold-{k}", "benchmark", cached_embed)
        for v, vtexts in variants.items():
            held = [normalize(vtexts[i]).text for i in test_idx]
            scores[v]["classifier"][test_idx] = model.predict_proba(held)
            for i in test_idx:
                # Scored exactly as the check scores (k=3, carrier discount, best).
                scored = attack_corpus.scored_neighbours(engine, queries[v][i],
                                                         cached_embed(queries[v][i]), k=3)
                scores[v]["similarity"][i] = scored[0][0] if scored else 0.0
        fold_metrics.append({"fold": k, "seconds": round(time.perf_counter() - started, 1)})
        print(f"  fold {k + 1}/{folds} done ({fold_metrics[-1]['seconds']} s)")
    with engine.begin() as conn:
        conn.execute(sql("DELETE FROM guardrail_attacks WHERE source <> 'seed'"))

    def summarize(variant: str) -> dict[str, Any]:
        layer_scores = scores[variant]
        out: dict[str, Any] = {}
        fired = {}
        for layer, threshold in thresholds.items():
            m = classifier.metrics_at(labels, layer_scores[layer].tolist(), threshold)
            out[layer] = m
            fired[layer] = layer_scores[layer] >= threshold
        combos = {"rules+similarity": ("rules", "similarity"),
                  "all layers": ("rules", "similarity", "classifier")}
        for name, layers in combos.items():
            any_fired = np.any([fired[layer] for layer in layers], axis=0).astype(float)
            out[name] = classifier.metrics_at(labels, any_fired.tolist(), 0.5)
            out[name]["threshold"] = None
            out[name]["roc_auc"] = None
        return out

    return {
        "records": n, "injections": int(y.sum()), "benign": int(n - y.sum()), "folds": folds,
        "thresholds": thresholds,
        "plain": summarize("plain"),
        "disguised": {v: summarize(v) for v in disguised},
        "fold_timing": fold_metrics,
        "seed_attacks": len(attack_corpus.read_seed_file()),
    }


# --- documents (ingest scan) --------------------------------------------------------------------

def document_scan_benchmark(paragraphs: list[str], attacks: list[str],
                            threshold: float) -> dict[str, Any]:
    """The ingest scan on ordinary paragraphs (false marks) and on the same paragraphs with an
    attack inserted after the first sentence (indirect injection caught)."""
    from services.ingest.handlers import scan_chunk

    rng = random.Random(11)
    clean = [scan_chunk(p) for p in paragraphs]
    poisoned = []
    for paragraph in paragraphs:
        head, sep, tail = paragraph.partition(". ")
        poisoned.append(scan_chunk(f"{head}{sep}{rng.choice(attacks)} {tail}"))
    return {"paragraphs": len(paragraphs), "threshold": threshold,
            "clean_marked": round(sum(s >= threshold for s in clean) / len(clean), 3),
            "poisoned_marked": round(sum(s >= threshold for s in poisoned) / len(poisoned), 3)}


# --- PII -----------------------------------------------------------------------------------------

# Dataset entity → the detector types that count as finding it. ADDRESS: the project's street
# address recognizer, or Presidio's LOCATION for a part of it. TITLE (Mr, Dr) is not PII any
# detector here recognizes; it is reported as unsupported instead of counted as a miss.
PII_MAP: dict[str, tuple[str, ...]] = {
    "PERSON": ("PERSON",), "LOCATION": ("LOCATION",), "ADDRESS": ("ADDRESS", "LOCATION"),
    "PHONE_NUMBER": ("PHONE_NUMBER",), "CREDIT_CARD": ("CREDIT_CARD",),
    "ORGANIZATION": ("ORGANIZATION",), "DATE_TIME": ("DATE_TIME",), "DOMAIN_NAME": ("URL",),
    "US_SSN": ("US_SSN",), "IP_ADDRESS": ("IP_ADDRESS",), "EMAIL_ADDRESS": ("EMAIL_ADDRESS",),
    "US_DRIVER_LICENSE": ("US_DRIVER_LICENSE",), "IBAN_CODE": ("IBAN_CODE",), "NRP": ("NRP",),
    "URL": ("URL",)}


def pii_benchmark(records: list[dict[str, Any]], min_score: float) -> dict[str, Any]:
    from services.common.pii import find_pii

    gold_types = sorted({s["entity_type"] for r in records for s in r["spans"]})
    per: dict[str, dict[str, int]] = {}
    unsupported: dict[str, int] = {}
    covered = total_gold = 0
    latencies = []
    for record in records:
        text = record["full_text"]
        started = time.perf_counter()
        found = find_pii(text, min_score=min_score)
        latencies.append((time.perf_counter() - started) * 1000)
        gold = [(PII_MAP.get(s["entity_type"], ()), s["start_position"], s["end_position"],
                 s["entity_type"]) for s in record["spans"]]
        for accepted, start, end, original in gold:
            total_gold += 1
            if any(f.start < end and start < f.end for f in found):
                covered += 1
            if not accepted:
                unsupported[original] = unsupported.get(original, 0) + 1
                continue
            row = per.setdefault(original, {"tp": 0, "fn": 0, "fp": 0})
            hit = any(f.entity_type in accepted and f.start < end and start < f.end
                      for f in found)
            row["tp" if hit else "fn"] += 1
        for f in found:
            if any(f.entity_type in accepted and f.start < e and s < f.end
                   for accepted, s, e, _ in gold):
                continue
            # A false positive is charged to the dataset type whose primary detector type it
            # is; types the dataset never labels are listed under the detector's name.
            owners = [g for g in gold_types if PII_MAP.get(g, ("",))[0] == f.entity_type] or \
                     [f"(detector) {f.entity_type}"]
            for owner in owners:
                per.setdefault(owner, {"tp": 0, "fn": 0, "fp": 0})["fp"] += 1
    entities = {}
    for name, row in sorted(per.items()):
        tp, fn, fp = row["tp"], row["fn"], row["fp"]
        precision = tp / (tp + fp) if tp + fp else None
        recall = tp / (tp + fn) if tp + fn else None
        f1 = None
        if precision is not None and recall is not None:
            f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        entities[name] = {**row, "support": tp + fn,
                          "precision": None if precision is None else round(precision, 3),
                          "recall": None if recall is None else round(recall, 3),
                          "f1": None if f1 is None else round(f1, 3),
                          "detector_types": list(PII_MAP.get(
                              name, (name.replace("(detector) ", ""),)))}
    return {"records": len(records), "min_score": min_score, "entities": entities,
            "unsupported": unsupported,
            "redaction_recall": round(covered / total_gold, 3) if total_gold else None,
            "gold_spans": total_gold,
            "latency_ms": {"p50": round(percentile(latencies, 50), 2),
                           "p95": round(percentile(latencies, 95), 2)}}


# --- latency -------------------------------------------------------------------------------------

def input_latency(questions: list[str], engine: Any, embed: Any, model: Any) -> dict[str, Any]:
    from services.guardrails.input_stage import InputDeps, screen_input
    from services.guardrails.policy import PACKAGED_POLICIES, load_policy_file

    policy = load_policy_file(PACKAGED_POLICIES / "default.yaml")
    rules_only = policy.model_copy(update={"input": policy.input.model_copy(update={
        "injection_similarity": policy.input.injection_similarity.model_copy(
            update={"enabled": False}),
        "injection_classifier": policy.input.injection_classifier.model_copy(
            update={"enabled": False}),
        "toxicity": policy.input.toxicity.model_copy(update={"enabled": False}),
        "pii": policy.input.pii.model_copy(update={"enabled": False})})})
    out = {}
    for name, pol in (("all layers", policy), ("rules only", rules_only)):
        deps = InputDeps(engine=engine, embed=embed, classifier=model)
        screen_input("warm up the models", pol, deps)
        samples: dict[str, list[float]] = {}
        for question in questions:
            screen_input(question, pol, deps)
            for check, ms in deps.timings_ms.items():
                samples.setdefault(check, []).append(ms)
        out[name] = {check: {"p50": round(percentile(v, 50), 2),
                             "p95": round(percentile(v, 95), 2)} for check, v in samples.items()}
    out["questions"] = len(questions)
    return out


def output_latency(answers: list[str]) -> dict[str, Any]:
    """The output stage on drafts built from ``answers`` (each cites one chunk holding it)."""
    try:
        from services.common.config import get_settings
        from services.common.events import (
            Citation,
            DraftEvidence,
            Principal,
            RagReply,
            RetrievedChunk,
        )
        from services.guardrails.output_stage import load_output_deps, screen_output, warm_up
        from services.guardrails.policy import PACKAGED_POLICIES, load_policy_file
    except ImportError as exc:
        return {"error": f"output stage not available: {exc}"}
    policy = load_policy_file(PACKAGED_POLICIES / "default.yaml")
    deps = load_output_deps(get_settings())
    deps.judge = None
    warm_up(deps)
    totals = []
    for i, answer in enumerate(answers):
        chunk = RetrievedChunk(chunk_id=f"c{i}", doc_id=f"d{i}", privacy_class="internal",
                               text=f"{answer} This is the source paragraph for the answer.")
        draft = RagReply(
            request_id=f"bench-{i}", answer=f"{answer} [1]", template_version="default/v1",
            citations=[Citation(n=1, chunk_id=chunk.chunk_id, doc_id=chunk.doc_id)],
            evidence=DraftEvidence(principal=Principal(id="bench", clearance="internal"),
                                   retrieved=[chunk]))
        started = time.perf_counter()
        screen_output(draft, policy, deps)
        totals.append((time.perf_counter() - started) * 1000)
    return {"drafts": len(answers), "total": {"p50": round(percentile(totals, 50), 2),
                                              "p95": round(percentile(totals, 95), 2)}}


# --- main ----------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--injections", type=Path, required=True,
                        help='JSONL of {"text", "label"} (1 = injection)')
    parser.add_argument("--pii", type=Path, required=True,
                        help="Presidio-research JSON (full_text, spans)")
    parser.add_argument("--documents", type=Path, default=None,
                        help="SQuAD JSON whose paragraphs test the ingest scan (optional)")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--latency-samples", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks"))
    parser.add_argument("--torch-threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's own choice). On a "
                             "shared 2-core machine 2 threads made one MiniLM query ~480 ms "
                             "instead of ~8 ms with 1 (oversubscription)")
    parser.add_argument("--latency-only", action="store_true",
                        help="re-measure only the latency section of an existing "
                             "<out>/guardrails.json (e.g. when the first run shared the CPUs)")
    args = parser.parse_args()
    state = configure_environment()

    import torch

    from services.common import migrate
    from services.common.config import get_settings
    from services.common.db import make_engine
    from services.common.embeddings import embedder_from_settings
    from services.guardrails import classifier
    from services.stack import postgres

    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    texts, labels = classifier.read_jsonl(args.injections)
    pii_records = json.loads(args.pii.read_text())
    settings = get_settings()
    embed = embedder_from_settings(settings).encode
    try:
        postgres.start(state, settings.postgres_port)
        migrate.upgrade(settings.sqlalchemy_url)
        engine = make_engine(settings.sqlalchemy_url)
        if args.latency_only:
            previous = json.loads((args.out / "guardrails.json").read_text())
            previous["latency"] = _latency(texts, labels, pii_records, engine, embed,
                                           args.latency_samples)
            previous["machine"] = _machine()
            engine.dispose()
            from benchmarks.guardrails_report import report

            report(previous, args.out)
            return
        print(f"== injection layers ({args.folds}-fold held-out) ==")
        injections = injection_benchmark(texts, labels, args.folds, engine, embed)
        documents = None
        if args.documents is not None:
            print("== ingest scan ==")
            squad = json.loads(args.documents.read_text())
            paragraphs = [p["context"] for a in squad["data"] for p in a["paragraphs"]]
            documents = document_scan_benchmark(
                paragraphs, [t for t, label in zip(texts, labels, strict=True) if label == 1],
                0.5)
        print("== PII ==")
        pii = pii_benchmark(pii_records, 0.5)
        latency = _latency(texts, labels, pii_records, engine, embed, args.latency_samples)
        engine.dispose()
    finally:
        postgres.stop(state)
        shutil.rmtree(state, ignore_errors=True)
    results = {"injections": injections, "documents": documents, "pii": pii, "latency": latency,
               "datasets": {"injections": args.injections.name, "pii": args.pii.name},
               "machine": _machine()}
    from benchmarks.guardrails_report import report

    report(results, args.out)


def _latency(texts: list[str], labels: list[int], pii_records: list[dict[str, Any]],
             engine: Any, embed: Any, samples: int) -> dict[str, Any]:
    from services.guardrails import classifier

    print("== latency ==")
    rng = random.Random(7)
    sample = rng.sample(texts, min(samples, len(texts)))
    model = classifier.train(texts, labels)
    return {"input": input_latency(sample, engine, embed, model),
            "output": output_latency([r["full_text"] for r in pii_records][:100])}


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def _machine() -> dict[str, object]:
    import platform

    # Other processes share the CPUs on small machines; the load average says how much the
    # latency figures were disturbed.
    return {"cpus": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(), "load_average": [round(x, 2) for x in os.getloadavg()],
            "torch_threads": _torch_threads(),
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


if __name__ == "__main__":
    main()
