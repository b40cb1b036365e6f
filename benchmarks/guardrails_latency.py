"""Input-stage latency by text length: the texts, and per-check p50/p95 per encoder path.

Run by ``benchmarks.guardrails`` (``--latency-only`` for this part alone). The texts are real:
injection-set prompts, PII-set records and SQuAD paragraphs, drawn in equal numbers per length
band up to 2,000 characters (so long texts are not a rare tail), plus texts of 3,000 to 16,000
characters joined from paragraphs to show how the cost grows beyond. The default policy blocks
questions over ``max_chars`` (4,000) and screens only their first 4,000 characters, so the long
texts run under the same policy with ``max_chars`` raised to 20,000: the checks' own cost at
that length, not the cut. Both encoder paths run on
the same texts in the same process, one model thread each (as the guardrails worker runs).

A path named ``ENCODER+ner`` runs that encoder under the default policy with names flagged
instead of allowed: the PII check then needs the named-entity pass the default policy skips
(``checks.pii.needs_ner``), so it is the cost of a policy that acts on names, and the default
path's cost before the skip, in the same run.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.harness import cpu_probe_s

BANDS = ((0, 100), (100, 250), (250, 500), (500, 1000), (1000, 2000))
LONG = (3000, 4000, 8000, 16000)


def latency_texts(injections: Path, pii: Path, squad: Path, per_band: int = 40,
                  per_long: int = 8, seed: int = 11) -> tuple[list[str], list[str]]:
    """(texts up to 2,000 characters, stratified by band; texts beyond, by target length)."""
    rng = random.Random(seed)
    pool = [json.loads(line)["text"] for line in injections.read_text().splitlines()
            if line.strip()]
    pool += [r["full_text"] for r in json.loads(pii.read_text())]
    paragraphs = [p["context"] for a in json.loads(squad.read_text())["data"]
                  for p in a["paragraphs"]]
    pool += paragraphs
    # Two paragraphs joined fill the top band, which single paragraphs barely reach.
    pool += [a + "\n\n" + b for a, b in zip(paragraphs[::2], paragraphs[1::2], strict=False)]
    short: list[str] = []
    for low, high in BANDS:
        band = [t for t in pool if low < len(t) <= high]
        short += rng.sample(band, min(per_band, len(band)))
    long: list[str] = []
    for target in LONG:
        for _ in range(per_long):
            parts: list[str] = []
            while sum(len(p) + 2 for p in parts) < target:
                parts.append(rng.choice(paragraphs))
            long.append("\n\n".join(parts)[:target])
    return short, long


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def measure(texts: list[str], screen: Any) -> dict[str, Any]:  # noqa: ANN401 - (text) -> timings
    """Per-check p50/p95 over ``texts``, overall and per length band; ``screen(text)`` runs the
    stage and returns its per-check milliseconds."""
    screen("warm up the input checks")
    per_text = [(len(t), screen(t)) for t in texts]
    return summarize(per_text)


def summarize(per_text: list[tuple[int, dict[str, float]]]) -> dict[str, Any]:
    def stats(rows: list[dict[str, float]]) -> dict[str, dict[str, float]]:
        checks: dict[str, list[float]] = {}
        for row in rows:
            for check, ms in row.items():
                checks.setdefault(check, []).append(ms)
        return {check: {"p50": round(percentile(v, 50), 2), "p95": round(percentile(v, 95), 2)}
                for check, v in checks.items()}

    bands: dict[str, Any] = {}
    for low, high in BANDS:
        rows = [t for n, t in per_text if low < n <= high]
        if rows:
            bands[f"{low + 1}-{high}"] = {"texts": len(rows), **stats(rows)}
    for target in LONG:
        rows = [t for n, t in per_text if n == target]
        if rows:
            bands[str(target)] = {"texts": len(rows), **stats(rows)}
    upto = [t for n, t in per_text if n <= BANDS[-1][1]]
    return {"up_to_2000": {"texts": len(upto), **stats(upto)}, "bands": bands}


def run(injections: Path, pii: Path, squad: Path, encoders: Sequence[str],
        per_band: int = 40, per_long: int = 8, engine: Any = None) -> dict[str, Any]:  # noqa: ANN401
    """Every encoder path on the same texts, interleaved text by text (so a burst of load on
    a shared machine hits both paths alike), under the default policy. With ``engine`` (a
    database with the schema) the stage also runs its attack-corpus lookup, seeded as a
    deployed stage seeds it: its own queries to embed and search, as in production; without
    one that check is skipped."""
    import os

    from services.guardrails.encoder import head_encoder
    from services.guardrails.input_stage import InputDeps, screen_input
    from services.guardrails.policy import PACKAGED_POLICIES, load_policy_file

    default = load_policy_file(PACKAGED_POLICIES / "default.yaml")
    short, long = latency_texts(injections, pii, squad, per_band, per_long)
    texts = short + long
    paths = {}
    for name in encoders:
        encoder = head_encoder(name.removesuffix("+ner"))
        policy = _with_names_flagged(default) if name.endswith("+ner") else default
        wide = policy.model_copy(update={"input": policy.input.model_copy(
            update={"max_chars": max(LONG) + 4000})})
        # Heads pinned from the package: the timing does not depend on which encoder they
        # were fitted on, and the previous encoder's path must still run.
        deps = InputDeps(embed=encoder.encode, same_input=encoder.same_input_key,
                         engine=engine, encoder_id=encoder.model_id)
        deps.classifier, deps.hate_head = deps.classifier_for(policy), deps.hate_head_for(policy)
        label = encoder.model_id + (" + named-entity pass" if name.endswith("+ner") else "")
        paths[label] = (deps, policy, wide)
        screen_input("warm up the input checks", policy, deps)
    per_text: dict[str, list[tuple[int, dict[str, float]]]] = {name: [] for name in paths}
    per_text_cpu: dict[str, list[tuple[int, dict[str, float]]]] = {name: [] for name in paths}
    for text in texts:
        for name, (deps, policy, wide) in paths.items():
            screen_input(text, policy if len(text) <= BANDS[-1][1] else wide, deps)
            per_text[name].append((len(text), dict(deps.timings_ms)))
            per_text_cpu[name].append((len(text), dict(deps.cpu_ms)))
    return {"paths": {name: summarize(rows) for name, rows in per_text.items()},
            "paths_cpu": {name: summarize(rows) for name, rows in per_text_cpu.items()},
            "texts": {"up_to_2000": len(short), "longer": len(long),
                      "bands": [f"{lo + 1}-{hi}" for lo, hi in BANDS], "long": list(LONG)},
            "attack_corpus": engine is not None,
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "cpu_probe_s": cpu_probe_s()}


def _with_names_flagged(policy: Any) -> Any:  # noqa: ANN401 - a Policy
    pii = policy.input.pii
    entities = {**pii.entities, "PERSON": "flag"}
    return policy.model_copy(update={"input": policy.input.model_copy(
        update={"pii": pii.model_copy(update={"entities": entities})})})


def write_report(results: dict[str, Any], out: Path) -> Path:
    """``input_screening_table.md`` beside the JSON: thread CPU time per check (the cost on
    one core, whatever else the machine runs) and wall time (what a caller waited here)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "input_screening.json").write_text(json.dumps(results, indent=1) + "\n")
    text = [f"Load average during the run: {results.get('load_average')}; CPU probe "
            f"{results.get('cpu_probe_s', '?')} s (benchmarks.harness.cpu_probe_s: 0.36 s on a "
            "quiet day)", "",
            "### CPU time per screening (ms on one core)", "",
            _tables(results["paths_cpu"]), "", "### Wall time (ms, on the shared machine)", "",
            _tables(results["paths"])]
    path = out / "input_screening_table.md"
    path.write_text("\n".join(text) + "\n")
    return path


def _tables(paths: dict[str, Any]) -> str:
    lines = ["| path | texts | total p50 | total p95 | embed p50 | embed p95 "
             "| pii p50 | pii p95 | rules p50 | toxicity p50 |", "|---" * 10 + "|"]
    for name, summary in paths.items():
        for band, row in [("≤ 2,000 chars", summary["up_to_2000"]), *summary["bands"].items()]:
            def cell(check: str, q: str, r: dict[str, Any] = row) -> str:
                return str(r.get(check, {}).get(q, "-"))
            lines.append(f"| {name} | {band} ({row['texts']}) | {cell('total', 'p50')} "
                         f"| {cell('total', 'p95')} | {cell('embed (one batch)', 'p50')} "
                         f"| {cell('embed (one batch)', 'p95')} | {cell('pii', 'p50')} "
                         f"| {cell('pii', 'p95')} | {cell('injection_rules', 'p50')} "
                         f"| {cell('toxicity', 'p50')} |")
    per_check = ["", "Per check, texts up to 2,000 characters (ms, p50 / p95):", "",
                 "| check | " + " | ".join(paths) + " |", "|---" * (1 + len(paths)) + "|"]
    first = next(iter(paths.values()))["up_to_2000"]
    for check in (c for c in first if c != "texts"):
        cells = [f"{s['up_to_2000'].get(check, {}).get('p50', '-')} / "
                 f"{s['up_to_2000'].get(check, {}).get('p95', '-')}" for s in paths.values()]
        per_check.append(f"| {check} | " + " | ".join(cells) + " |")
    return "\n".join(lines + per_check)
