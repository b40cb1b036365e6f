"""PII recall/precision per entity and input-stage latency per check, beside baselines.

    .venv/bin/python -m benchmarks.guardrails_pii --pii ../shared/datasets/pii_presidio_small.json

Data, split so nothing is reported on what it was tuned on:

* the public set (Presidio-research's generated sentences) is split in two by a hash of each
  text: the ``tune`` half is what the recognizers in
  ``services/guardrails/checks/pii_recognizers.py`` were written against; the figures are
  reported on the ``held-out`` half (the tune half is printed too, marked as such);
* generated cases (Faker, pinned in the dev extra): sentences from hand-written templates with
  phone numbers of 12 locales (national and international formats), card numbers, IBANs, US
  SSNs, e-mail addresses, street addresses and names, plus sentences with no PII but numbers,
  dates and codes (for precision). Seed ``--tune-seed`` (14) was used while writing the
  recognizers; the report is on seed ``--seed`` (1414), different values from the same
  templates.

Detectors, in the same run: Presidio's default ``AnalyzerEngine`` (its own recognizers on the
same offline spaCy model) as the naive baseline, the project's previous detector
(``services.common.pii.find_pii``), and the guardrails' detector
(``services.guardrails.checks.pii_detect.find_pii_fast``). A gold span counts as found when a
finding of an accepted type overlaps it; a finding overlapping no gold span of its type is a
false positive.

Latency: the input stage under the default policy, one torch thread, on texts of 40 to 8,000
characters built from the generated sentences; per check p50/p95, with the previous PII
detector timed on the same texts.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks.guardrails import configure_environment, percentile

Gold = tuple[str, int, int]
Record = dict[str, Any]
Detector = Callable[[str], list[tuple[str, int, int]]]

# Dataset entity → detector types that count as finding it (as in benchmarks/guardrails.py).
ACCEPTED: dict[str, tuple[str, ...]] = {
    "PERSON": ("PERSON",), "ADDRESS": ("ADDRESS", "LOCATION"), "LOCATION": ("LOCATION",),
    "PHONE_NUMBER": ("PHONE_NUMBER",), "CREDIT_CARD": ("CREDIT_CARD",),
    "IBAN_CODE": ("IBAN_CODE",), "US_SSN": ("US_SSN",), "EMAIL_ADDRESS": ("EMAIL_ADDRESS",),
    "IP_ADDRESS": ("IP_ADDRESS",), "ORGANIZATION": ("ORGANIZATION",),
    "DATE_TIME": ("DATE_TIME",), "DOMAIN_NAME": ("URL",),
    "US_DRIVER_LICENSE": ("US_DRIVER_LICENSE",)}
GOALS = {"PHONE_NUMBER": 0.95, "CREDIT_CARD": 0.95, "IBAN_CODE": 0.95, "US_SSN": 0.95,
         "EMAIL_ADDRESS": 0.95, "ADDRESS": 0.90, "PERSON": 0.90}
PRECISION_GOAL = 0.90
PHONE_LOCALES = ("en_US", "en_GB", "de_DE", "fr_FR", "it_IT", "es_ES", "nl_NL", "pt_BR", "en_IN",
                 "en_AU", "de_CH", "pl_PL")
ADDRESS_LOCALES = ("en_US", "en_GB", "de_DE", "fr_FR", "it_IT", "es_ES", "nl_NL")
NAME_LOCALES = ("en_US", "en_GB", "de_DE", "fr_FR", "it_IT", "es_ES", "nl_NL", "pt_BR", "pl_PL")
IBAN_LOCALES = ("de_DE", "fr_FR", "it_IT", "es_ES", "nl_NL", "en_GB", "pl_PL")

TEMPLATES: dict[str, tuple[str, ...]] = {
    "PHONE_NUMBER": ("Please call me back on {v} after five.", "My number is {v}.",
                     "You can reach the office at {v} or by mail.", "Fax: {v}",
                     "Is {v} still the right hotline?", "Text me at {v} when you land",
                     "Contact: {v} (mobile)"),
    "CREDIT_CARD": ("Charge it to my card {v} please.", "card number {v}, expires next year",
                    "Why was {v} declined yesterday?"),
    "IBAN_CODE": ("Transfer the refund to {v}.", "My IBAN is {v}", "Is {v} a valid account?"),
    "US_SSN": ("My SSN is {v}.", "social security number {v} on the form",
               "Update the record for {v}"),
    "EMAIL_ADDRESS": ("Send the invoice to {v}.", "write to {v} with questions",
                      "Is {v} on the list?"),
    "ADDRESS": ("Ship it to {v}.", "I moved to {v} last month.", "Our new office is at {v}",
                "Billing address: {v}", "She lives at {v}, second floor."),
    "PERSON": ("Please ask {v} to approve the request.", "{v} called about the contract.",
               "Can you tell me when {v} joined the team?", "The report was written by {v}.",
               "Hi, I'm {v} and I need help with my account."),
}
NEGATIVES = ("Order {n} shipped on {d}.", "Version {n}.{m} fixes the login bug.",
             "The meeting is on {d} at 10:30 in room {m}.", "We sold {n} units in {y}, up {m}%.",
             "Invoice INV-{n} totals {m}.50 EUR.", "Ticket #{n} was closed on {d}.",
             "Build {n} took {m} minutes.", "Chapter {m} covers pages {n} to {n2}.",
             "What is the capital of France?", "How do I reset my password?",
             "Summarise the quarterly report for the sales team.")


def _split(text: str) -> str:
    return "tune" if int(hashlib.sha256(text.encode()).hexdigest(), 16) % 2 == 0 else "held-out"


def public_records(path: Path) -> dict[str, list[Record]]:
    records = json.loads(path.read_text())
    out: dict[str, list[Record]] = {"tune": [], "held-out": []}
    for record in records:
        out[_split(record["full_text"])].append(
            {"text": record["full_text"],
             "gold": [(s["entity_type"], s["start_position"], s["end_position"])
                      for s in record["spans"]]})
    return out


def _value(fakers: dict[str, Any], entity: str, rng: random.Random) -> str:
    if entity == "PHONE_NUMBER":
        return fakers[rng.choice(PHONE_LOCALES)].phone_number()
    if entity == "CREDIT_CARD":
        number = fakers["en_US"].credit_card_number()
        if rng.random() < 0.4 and len(number) == 16:
            sep = rng.choice([" ", "-"])
            number = sep.join(number[i:i + 4] for i in range(0, 16, 4))
        return number
    if entity == "IBAN_CODE":
        value = fakers[rng.choice(IBAN_LOCALES)].iban()
        if rng.random() < 0.5:
            value = " ".join(value[i:i + 4] for i in range(0, len(value), 4))
        return value
    if entity == "US_SSN":
        return fakers["en_US"].ssn()
    if entity == "EMAIL_ADDRESS":
        return fakers[rng.choice(NAME_LOCALES)].email()
    if entity == "ADDRESS":
        return fakers[rng.choice(ADDRESS_LOCALES)].street_address()
    return fakers[rng.choice(NAME_LOCALES)].name()


def generated_records(seed: int, per_entity: int = 60, negatives: int = 120) -> list[Record]:
    """Sentences with one value each (gold span known) and sentences with none."""
    from faker import Faker

    rng = random.Random(seed)
    locales = sorted({*PHONE_LOCALES, *ADDRESS_LOCALES, *NAME_LOCALES, *IBAN_LOCALES})
    fakers = {}
    for i, locale in enumerate(locales):
        fakers[locale] = Faker(locale)
        fakers[locale].seed_instance(seed * 100 + i)
    records: list[Record] = []
    for entity, templates in TEMPLATES.items():
        for _ in range(per_entity):
            value = _value(fakers, entity, rng).replace("\n", ", ")
            template = rng.choice(templates)
            start = template.index("{v}")
            text = template.replace("{v}", value)
            records.append({"text": text, "gold": [(entity, start, start + len(value))]})
    for _ in range(negatives):
        template = rng.choice(NEGATIVES)
        text = template.format(n=rng.randint(100, 99999), n2=rng.randint(100, 999),
                               m=rng.randint(1, 60), y=rng.randint(1990, 2030),
                               d=fakers["en_US"].date())
        records.append({"text": text, "gold": []})
    return records


def score(records: Sequence[Record], detect: Detector) -> dict[str, Any]:
    per: dict[str, dict[str, int]] = {}
    for record in records:
        text, gold = record["text"], record["gold"]
        found = detect(text)
        for entity, start, end in gold:
            accepted = ACCEPTED.get(entity)
            if accepted is None:
                continue
            row = per.setdefault(entity, {"tp": 0, "fn": 0, "fp": 0})
            hit = any(t in accepted and s < end and start < e for t, s, e in found)
            row["tp" if hit else "fn"] += 1
        for t, s, e in found:
            if any(t in ACCEPTED.get(g, ()) and s < ge and gs < e for g, gs, ge in gold):
                continue
            owner = next((g for g, acc in ACCEPTED.items() if acc[0] == t), f"({t})")
            per.setdefault(owner, {"tp": 0, "fn": 0, "fp": 0})["fp"] += 1
    out = {}
    for name, row in sorted(per.items()):
        tp, fn, fp = row["tp"], row["fn"], row["fp"]
        out[name] = {**row,
                     "recall": round(tp / (tp + fn), 3) if tp + fn else None,
                     "precision": round(tp / (tp + fp), 3) if tp + fp else None}
    return out


def detectors() -> dict[str, Detector]:
    from presidio_analyzer import AnalyzerEngine

    from services.common.pii import PiiFinding, analyzer, find_pii
    from services.guardrails.checks.pii_detect import find_pii_fast, joined
    from services.guardrails.policy import PACKAGED_POLICIES, load_policy_file

    default = AnalyzerEngine(nlp_engine=analyzer().nlp_engine, supported_languages=["en"])
    policy = load_policy_file(PACKAGED_POLICIES / "default.yaml").input.pii

    def resolved(found: list[PiiFinding]) -> list[tuple[str, int, int]]:
        # Overlaps resolved as the input check does: a type the default policy redacts wins
        # over one it allows (a phone number over the "date" spaCy reads in it), then score.
        def rank(f: PiiFinding) -> tuple[float, ...]:
            return (policy.action_for(f.entity_type) != "allow", f.score, f.end - f.start)

        return [(f.entity_type, f.start, f.end) for f in joined(found, rank)]

    def presidio_default(text: str) -> list[tuple[str, int, int]]:
        found = [PiiFinding(r.entity_type, r.start, r.end, r.score)
                 for r in default.analyze(text=text, language="en", score_threshold=0.5)]
        return resolved(found)

    def previous(text: str) -> list[tuple[str, int, int]]:
        return [(f.entity_type, f.start, f.end) for f in find_pii(text)]

    def guardrails(text: str) -> list[tuple[str, int, int]]:
        return resolved(find_pii_fast(text))

    return {"presidio default (baseline)": presidio_default, "previous detector": previous,
            "guardrails detector": guardrails}


def leaks(records: Sequence[Record]) -> dict[str, int]:
    """Characters the previous detector redacted (default policy) that the new one does not."""
    from services.common.pii import find_pii
    from services.guardrails.checks.pii import check_pii
    from services.guardrails.policy import PACKAGED_POLICIES, load_policy_file

    policy = load_policy_file(PACKAGED_POLICIES / "default.yaml").input.pii
    spans = chars = 0
    for record in records:
        text = record["text"]
        old = [f for f in find_pii(text) if policy.action_for(f.entity_type) in ("redact", "block")]
        _, redacted = check_pii(text, policy)
        for finding in old:
            spans += 1
            if finding.text_in(text) in redacted:
                chars += len(finding.text_in(text))
    return {"old_redacted_spans": spans, "leaked_chars": chars}


def latency(texts: Sequence[str], torch_threads: int) -> dict[str, Any]:
    import torch

    from services.common.config import get_settings
    from services.common.embeddings import embedder_from_settings
    from services.common.pii import find_pii
    from services.guardrails.input_stage import InputDeps, screen_input
    from services.guardrails.policy import PACKAGED_POLICIES, load_policy_file

    torch.set_num_threads(torch_threads)
    policy = load_policy_file(PACKAGED_POLICIES / "default.yaml")
    deps = InputDeps(embed=embedder_from_settings(get_settings()).encode)
    screen_input("warm up the models, call +44 20 7946 0958", policy, deps)
    find_pii("warm up John Smith")
    rows = []
    for text in texts:
        screen_input(text, policy, deps)
        row = dict(deps.timings_ms)
        started = time.perf_counter()
        find_pii(text)
        row["pii (previous detector)"] = round((time.perf_counter() - started) * 1000, 3)
        rows.append({"chars": len(text), **row})
    return {"rows": rows}


def summarise_latency(rows: list[dict[str, Any]]) -> dict[str, Any]:
    bins = {"≤ 2,000 chars": [r for r in rows if r["chars"] <= 2000],
            "≤ 200 chars": [r for r in rows if r["chars"] <= 200],
            "2,001-8,000 chars": [r for r in rows if r["chars"] > 2000]}
    out = {}
    for name, chosen in bins.items():
        if not chosen:
            continue
        checks = [k for k in chosen[0] if k != "chars"]
        out[name] = {"texts": len(chosen),
                     **{c: {"p50": round(percentile([r[c] for r in chosen], 50), 2),
                            "p95": round(percentile([r[c] for r in chosen], 95), 2)}
                        for c in checks}}
    long = [r for r in rows if r["chars"] > 2000]
    if long:
        out["ms per 1,000 chars beyond 2,000 (total, median)"] = round(percentile(
            [r["total"] / r["chars"] * 1000 for r in long], 50), 2)
    return out


def latency_texts(records: Sequence[Record], rng: random.Random, count: int) -> list[str]:
    """Texts of 40 to 8,000 characters: generated sentences joined; most up to 2,000."""
    sentences = [r["text"] for r in records]
    texts = []
    for i in range(count):
        target = rng.choice([60, 120, 250, 500, 1000, 2000]) if i % 6 else rng.choice(
            [4000, 8000])
        parts: list[str] = []
        while sum(len(p) + 1 for p in parts) < target:
            parts.append(rng.choice(sentences))
        texts.append(" ".join(parts)[:target])
    return texts


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    held = results["pii"]["held-out"]
    names = list(held)
    entities = [e for e in GOALS if any(e in held[n] for n in names)]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.8))
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        values = [held[name].get(e, {}).get("recall") or 0 for e in entities]
        ax1.bar([x + i * width for x in range(len(entities))], values, width, label=name)
    for x, entity in enumerate(entities):
        ax1.hlines(GOALS[entity], x - width / 2, x + 0.8 - width / 2, colors="k",
                   linestyles="dashed")
    ax1.set_xticks([x + 0.4 - width / 2 for x in range(len(entities))])
    ax1.set_xticklabels(entities, rotation=30, ha="right", fontsize=8)
    ax1.set_ylim(0, 1.05)
    ax1.set_title("PII recall, held-out public half + generated (dashed: goal)")
    ax1.legend(fontsize=7, loc="lower left")
    rows = results["latency"]["rows"]
    xs = [r["chars"] for r in rows]
    ax2.scatter(xs, [r["total"] for r in rows], s=8, label="input stage, total")
    ax2.scatter(xs, [r["pii"] for r in rows], s=8, label="pii check")
    ax2.scatter(xs, [r["pii (previous detector)"] for r in rows], s=8, marker="x",
                label="previous PII detector (baseline)")
    ax2.axhline(120, color="k", linestyle="dashed", linewidth=0.8)
    ax2.axhline(30, color="grey", linestyle="dotted", linewidth=0.8)
    ax2.set_xlabel("characters")
    ax2.set_ylabel("ms (one torch thread, shared 2-core machine)")
    ax2.set_title("Input-stage latency vs length (lines: p95 / p50 goals)")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def report_md(results: dict[str, Any]) -> str:
    lines = ["# PII and input-stage latency", "",
             f"Command: `{results['command']}`  ", f"Machine: {results['machine']}  ",
             f"Data: {results['data']}", ""]
    for part in ("held-out", "tune"):
        title = ("Held-out (reported)" if part == "held-out"
                 else "Tune half (written against; not a result)")
        lines += [f"## PII, {title}", "",
                  "| entity | goal | " + " | ".join(results["pii"][part]) + " |",
                  "|---|---:|" + "---:|" * len(results["pii"][part])]
        table = results["pii"][part]
        entities = sorted({e for d in table.values() for e in d})
        for entity in entities:
            cells = []
            for name in table:
                row = table[name].get(entity)
                cells.append("–" if row is None else
                             f"{row['recall'] if row['recall'] is not None else '–'} / "
                             f"{row['precision'] if row['precision'] is not None else '–'}")
            goal = GOALS.get(entity)
            lines.append(f"| {entity} | {goal or ''} | " + " | ".join(cells) + " |")
        lines += ["", "Cells: recall / precision.", ""]
    lines += ["## Redaction kept exact", "", f"{results['leaks']}", "", "## Latency (ms)", ""]
    for name, summary in results["latency_summary"].items():
        if not isinstance(summary, dict):
            lines.append(f"* {name}: {summary}")
            continue
        lines += [f"### {name} ({summary['texts']} texts)", "", "| check | p50 | p95 |",
                  "|---|---:|---:|"]
        lines += [f"| {c} | {v['p50']} | {v['p95']} |" for c, v in summary.items()
                  if isinstance(v, dict)]
        lines.append("")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pii", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=1414, help="generated cases reported on")
    parser.add_argument("--tune-seed", type=int, default=14, help="generated cases tuned on")
    parser.add_argument("--per-entity", type=int, default=60)
    parser.add_argument("--latency-samples", type=int, default=120)
    parser.add_argument("--torch-threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks/guardrails_pii"))
    parser.add_argument("--skip-latency", action="store_true")
    args = parser.parse_args()
    configure_environment()
    public = public_records(args.pii)
    sets = {"held-out": public["held-out"] + generated_records(args.seed, args.per_entity),
            "tune": public["tune"] + generated_records(args.tune_seed, args.per_entity)}
    found = detectors()
    pii: dict[str, dict[str, Any]] = {}
    for part, records in sets.items():
        pii[part] = {}
        for name, detect in found.items():
            pii[part][name] = score(records, detect)
            print(part, name, json.dumps({e: (r["recall"], r["precision"])
                                          for e, r in pii[part][name].items()}))
    results: dict[str, Any] = {
        "command": f".venv/bin/python -m benchmarks.guardrails_pii --pii {args.pii}",
        "data": {"public": args.pii.name, "held_out_public": len(public["held-out"]),
                 "tune_public": len(public["tune"]),
                 "generated": f"Faker (seed {args.seed} reported, {args.tune_seed} tuned on), "
                              f"{args.per_entity} per entity + negatives"},
        "pii": pii, "leaks": leaks(sets["held-out"] + sets["tune"])}
    print("leaks", results["leaks"])
    rows: list[dict[str, Any]] = []
    if not args.skip_latency:
        texts = latency_texts(sets["held-out"], random.Random(args.seed), args.latency_samples)
        rows = latency(texts, args.torch_threads)["rows"]
    results["latency"] = {"rows": rows}
    results["latency_summary"] = summarise_latency(rows) if rows else {}
    results["machine"] = {"cpus": os.cpu_count(),
                          "load_average": [round(x, 2) for x in os.getloadavg()],
                          "torch_threads": args.torch_threads,
                          "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    print(json.dumps(results["latency_summary"], indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=1, ensure_ascii=False))
    args.out.with_suffix(".md").write_text(report_md(results))
    if rows:
        plot(results, args.out.with_suffix(".png"))


if __name__ == "__main__":
    main()
