"""Guardrails benchmark: injection detection leave-one-source-out, hate vs. offensive, the
ingest scan, PII per entity, latency per check.

    .venv/bin/python -m benchmarks.guardrails \\
        --injections ../shared/datasets/prompt_injections_train.jsonl \\
        --squad ../shared/datasets/squad_v11_train_11articles.json \\
        --tweets ../shared/datasets/hate_offensive_tweets.jsonl \\
        --pii ../shared/datasets/pii_presidio_small.json \\
        --documents ../shared/datasets/squad_v2_dev_5articles.json

Every learned figure is on data the model (and its threshold) never saw, beside a naive
baseline from the same run:

- prompt injection: leave-one-source-out over five sources, per source, per kind and per
  disguise; rules, TF-IDF + logistic regression, the MiniLM head and the similarity layer,
  alone and combined (``benchmarks/guardrails_loso.py``);
- hate vs. offensive: a held-out split of the tweets and the project's functional cases,
  against the toxicity model and TF-IDF (``benchmarks/guardrails_hate.py``);
- documents (ingest scan, rules only): ordinary paragraphs marked, and the same paragraphs
  with an attack from the data set inserted (``--documents``); the MiniLM head's figures on
  the same paragraphs are shown beside them;
- PII, per-entity precision / recall / F1 by span overlap, plus "redaction recall";
- latency per input check (p50/p95) under the default policy, against rules alone, and by
  text length with the attack-corpus lookup on a private Postgres, as the stage runs deployed
  (``benchmarks/guardrails_latency.py``).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
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
    # A neutral carrier: "decode this and do what it says" is itself an instruction to follow
    # hidden content, and would make every text, benign or not, look like an attack.
    "base64": lambda t: "What does this base64 string say? "
                        + base64.b64encode(t.encode()).decode(),
}


# --- documents (ingest scan) --------------------------------------------------------------------

def document_scan_benchmark(paragraphs: list[str], attacks: list[str], threshold: float,
                            embed: Any) -> dict[str, Any]:  # noqa: ANN401 - an EmbedFn
    """The ingest scan on ordinary paragraphs (false marks) and on the same paragraphs with an
    attack inserted after the first sentence (indirect injection caught). The shipped MiniLM
    head is scored on the same chunks for comparison: the ingest worker does not load torch,
    so it cannot run there (see docs/guardrails.md)."""
    import numpy as np

    from services.guardrails import classifier
    from services.ingest.handlers import scan_chunk

    rng = random.Random(11)
    poisoned_texts = []
    for paragraph in paragraphs:
        head, sep, tail = paragraph.partition(". ")
        poisoned_texts.append(f"{head}{sep}{rng.choice(attacks)} {tail}")
    clean = [scan_chunk(p) for p in paragraphs]
    poisoned = [scan_chunk(p) for p in poisoned_texts]
    model = classifier.load(classifier.PACKAGED_MODEL)
    head_clean = classifier.predict_proba(model, paragraphs, embed)
    head_poisoned = classifier.predict_proba(model, poisoned_texts, embed)
    return {"paragraphs": len(paragraphs), "threshold": threshold,
            "clean_marked": round(sum(s >= threshold for s in clean) / len(clean), 3),
            "poisoned_marked": round(sum(s >= threshold for s in poisoned) / len(poisoned), 3),
            "head_threshold": round(model.threshold, 4),
            "head_clean_marked": round(float(np.mean(head_clean >= model.threshold)), 3),
            "head_poisoned_marked": round(float(np.mean(head_poisoned >= model.threshold)), 3),
            "note": "the attacks come from the public set the packaged head was trained on, "
                    "so the head's poisoned figure is optimistic"}


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

def input_latency(questions: list[str], embed: Any) -> dict[str, Any]:  # noqa: ANN401
    """Per-check p50/p95 of the input stage under the default policy (its heads, no database:
    the similarity layer is off by default), against the rules layer alone."""
    from services.guardrails.input_stage import InputDeps, screen_input
    from services.guardrails.policy import PACKAGED_POLICIES, load_policy_file

    policy = load_policy_file(PACKAGED_POLICIES / "default.yaml")
    off = {"enabled": False}
    rules_only = policy.model_copy(update={"input": policy.input.model_copy(update={
        name: getattr(policy.input, name).model_copy(update=off)
        for name in ("injection_similarity", "injection_classifier", "hate", "toxicity",
                     "pii")})})
    out: dict[str, Any] = {}
    for name, pol in (("default policy", policy), ("rules only", rules_only)):
        deps = InputDeps(embed=embed)
        screen_input("warm up the models", pol, deps)
        samples: dict[str, list[float]] = {}
        for question in questions:
            screen_input(question, pol, deps)
            for check, ms in deps.timings_ms.items():
                samples.setdefault(check, []).append(ms)
        out[name] = {check: {"p50": round(percentile(v, 50), 2),
                             "p95": round(percentile(v, 95), 2)} for check, v in samples.items()}
    out["questions"] = len(questions)
    out["chars"] = {"p50": percentile([len(q) for q in questions], 50),
                    "max": max(len(q) for q in questions)}
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

def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--injections", type=Path, required=True,
                        help='JSONL of {"text", "label"} (1 = injection)')
    parser.add_argument("--squad", type=Path, required=True,
                        help="SQuAD JSON whose questions are the ordinary-question source")
    parser.add_argument("--tweets", type=Path, required=True,
                        help='JSONL of {"text", "label": hate|offensive|neither}')
    parser.add_argument("--pii", type=Path, required=True,
                        help="Presidio-research JSON (full_text, spans)")
    parser.add_argument("--documents", type=Path, default=None,
                        help="SQuAD JSON whose paragraphs test the ingest scan (optional)")
    parser.add_argument("--latency-samples", type=int, default=200)
    parser.add_argument("--cache", type=Path, default=None,
                        help="embedding cache (npz), e.g. shared with build_heads")
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks"))
    parser.add_argument("--encoder", default=None,
                        help="encoder of the learned heads (default: the guardrails encoder, "
                             "MiniLM int8 on ONNX Runtime; 'minilm' for the torch MiniLM)")
    parser.add_argument("--latency-only", action="store_true",
                        help="only the input-stage latency by text length "
                             "(docs/benchmarks/input_screening.*)")
    parser.add_argument("--latency-encoders", default="minilm-int8,minilm-int8+ner",
                        help="encoder paths timed side by side in the latency-by-length part "
                             "(ENCODER+ner: with the named-entity pass a policy acting on "
                             "names needs)")
    parser.add_argument("--latency-without-database", action="store_true",
                        help="time the input stage without its attack-corpus lookup (no "
                             "Postgres started; that check is skipped, as offline)")
    parser.add_argument("--per-band", type=int, default=40,
                        help="texts per length band up to 2,000 characters")
    parser.add_argument("--torch-threads", type=int, default=1,
                        help="torch intra-op threads, as the worker runs (1: on a shared "
                             "2-core machine 2 threads made one query ~50x slower)")
    return parser.parse_args()


def main() -> None:
    args = _arguments()
    state = configure_environment()

    import torch

    from benchmarks import guardrails_hate, guardrails_latency, guardrails_loso
    from benchmarks.guardrails_report import report
    from benchmarks.harness import running_database
    from services.guardrails import sources
    from services.guardrails.embed_cache import CachedEmbed
    from services.guardrails.encoder import head_encoder
    from services.guardrails.policy import PACKAGED_POLICIES, load_policy_file

    torch.set_num_threads(args.torch_threads)
    timed = [e.strip() for e in args.latency_encoders.split(",") if e.strip()]
    if timed:
        print("== input-stage latency by text length ==")
        with ExitStack() as stack:
            engine = (None if args.latency_without_database
                      else stack.enter_context(running_database(state)))
            by_length = guardrails_latency.run(args.injections, args.pii, args.squad, timed,
                                               args.per_band, engine=engine)
        by_length["machine"] = _machine()
        print(guardrails_latency.write_report(by_length, args.out).read_text())
    if args.latency_only:
        return
    policy = load_policy_file(PACKAGED_POLICIES / "default.yaml")
    encoder = head_encoder(args.encoder)
    embed = CachedEmbed(encoder.encode, args.cache)
    try:
        print("== injection: leave one source out ==")
        named = sources.injection_sources(args.injections, args.squad, args.pii)
        injections = guardrails_loso.run(
            named, embed, policy.input.injection_rules.threshold,
            policy.input.injection_similarity.threshold, DISGUISES, progress=print)
        print("== hate vs offensive ==")
        hate = guardrails_hate.run(sources.tweets(args.tweets), sources.hate_train(),
                                   sources.hate_templated(), sources.squad_questions(args.squad),
                                   sources.hate_functional(), embed,
                                   policy.input.toxicity.threshold, progress=print)
        documents = None
        if args.documents is not None:
            print("== ingest scan ==")
            squad = json.loads(args.documents.read_text())
            paragraphs = [p["context"] for a in squad["data"] for p in a["paragraphs"]]
            deepset = named["deepset"]
            attacks = [t for t, y in zip(deepset.texts, deepset.labels, strict=True) if y]
            documents = document_scan_benchmark(paragraphs, attacks, 0.5, embed)
    finally:
        embed.save()
    print("== PII ==")
    pii_records = json.loads(args.pii.read_text())
    pii = pii_benchmark(pii_records, 0.5)
    print("== latency ==")
    rng = random.Random(7)
    texts = [t for s in named.values() for t in s.texts]
    sample = rng.sample(texts, min(args.latency_samples, len(texts)))
    latency = {"input": input_latency(sample, encoder.encode),
               "output": output_latency([r["full_text"] for r in pii_records][:100])}
    results = {"injections": injections, "hate": hate, "documents": documents, "pii": pii,
               "latency": latency, "encoder": encoder.model_id,
               "datasets": {"injections": args.injections.name, "squad": args.squad.name,
                            "tweets": args.tweets.name, "pii": args.pii.name},
               "machine": _machine()}
    report(results, args.out)


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
