"""Markdown table and chart for ``benchmarks.query_path_speed`` results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

LABELS = {"stored": "stored findings (default)",
          "baseline": "baseline: every cited chunk analysed"}


def markdown(results: dict[str, Any]) -> str:
    corpus = results.get("corpus", {})
    lines = [
        "## Query path speed: retrieval-only through the gateway, both guardrail stages",
        "",
        "    .venv/bin/python -m benchmarks.query_path_speed",
        "",
        f"Corpus: {corpus.get('docs')} SQuAD v1.1 paragraphs ({corpus.get('chunks')} chunks), "
        f"published and indexed in {corpus.get('publish_to_indexed_s')} s "
        f"({corpus.get('paragraphs_per_s')} paragraphs/s; PII findings stored by the guardrails "
        f"worker's background indexer); findings cover "
        f"{results.get('findings', {}).get('with_findings')} of "
        f"{results.get('findings', {}).get('chunk_texts')} chunk texts, and "
        f"{results.get('findings', {}).get('stored_texts')} texts in all after the requests "
        "(the output stage stores what it analysed: citations that join chunks). Requests: the "
        "official "
        "`openai` client, `retrieval_only`, top 10, no cache, questions of the published set "
        "(nothing tuned on them).",
        "",
        "| mode | single p50 ms | single p95 ms | 8 concurrent p50 ms | p95 ms | req/s "
        "| output stage p50 ms | rag worker p50 ms | rest p50 ms |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for mode, found in results.get("modes", {}).items():
        s, c = found["single"], found["concurrent"]
        stages = s["stages_p50_ms"]
        lines.append(
            f"| {LABELS.get(mode, mode)} | {s['p50_ms']} | {s['p95_ms']} | {c['p50_ms']} | "
            f"{c['p95_ms']} | {c.get('rps')} | {stages.get('guardrails_output')} | "
            f"{stages.get('total')} | {stages.get('rest')} |")
    lines += _cpu_table(results)
    lines += _timeline_table(results)
    inp = results.get("input_stage", {})
    lines += [
        "",
        "What the stored findings change: the output stage used to run Presidio over every "
        "cited chunk of every answer (~70 ms a SQuAD paragraph on this CPU, ten per "
        "retrieval-only reply). Now the guardrails worker's background indexer analyses each "
        "indexed chunk text once, newest first, and stores the findings by content hash and "
        "detector version (`chunk_pii_findings`, "
        "migration 0012); the output stage fetches the cited chunks' findings in one query and "
        "analyses only the answer's own text and what it does not find (storing that too). "
        "Redaction is computed from the same findings either way. Also on this path: a stage's "
        "audit events go to the broker together (one acknowledgement round trip instead of one "
        "per decision) and a retrieval-only request skips the relevance query.",
    ]
    lines += [
        "",
        "*rest* = end to end − rag worker − output stage: the input stage, four Kafka hops and "
        "the gateway. Stage times are single-request medians.",
        f"Input stage alone (same questions, in process, default policy): p50 "
        f"{inp.get('p50_ms')} ms, p95 {inp.get('p95_ms')} ms; per check, p50 ms: "
        + ", ".join(f"{check} {ms}" for check, ms in inp.get("checks_p50_ms", {}).items())
        + ".",
        f"What the indexer pays instead, in the background: the detector on one paragraph, "
        f"p50 {results.get('ingest_pii', {}).get('p50_ms')} ms, p95 "
        f"{results.get('ingest_pii', {}).get('p95_ms')} ms (once per chunk text; "
        "`CUSTOMLLM_GUARDRAILS_PII_INDEXER=false` leaves it to the output stage's first "
        "citation).",
        "",
        f"Goals (issue #13 item 4): single p50 ≤ 60 ms, ≥ 20 req/s at 8 concurrent on 2 cores. "
        f"The machine's 2 cores are shared with other sessions: load average "
        f"{_load(results.get('load_start'))} at the start, {_load(results.get('load_end'))} at "
        "the end; per phase in the JSON. CPU probe (`benchmarks.harness.cpu_probe_s`, a fixed "
        f"Python loop; 0.36 s on a quiet day): {results.get('cpu_probe_start_s', '?')} s at the "
        f"start, {results.get('cpu_probe_end_s', '?')} s at the end.",
    ]
    return "\n".join(lines) + "\n"


def _cpu_table(results: dict[str, Any]) -> list[str]:
    """CPU per request by process in the concurrent phase: what the path costs whatever the
    other tenants do, and the throughput 2 cores of its own would allow."""
    modes = {m: f.get("cpu_ms_per_request", {}).get("concurrent") for m, f in
             results.get("modes", {}).items()}
    modes = {m: v for m, v in modes.items() if v}
    if not modes:
        return []
    names = sorted({n for v in modes.values() for n in v
                    if n not in ("stack_total", "capacity_rps_on_2_cores", "client")})
    lines = ["", "CPU milliseconds per request, by process (8-concurrent phase; the client's "
             "own is left out of the total):", "",
             "| mode | " + " | ".join(names) + " | stack total | req/s 2 idle cores allow |",
             "|---|" + "---|" * (len(names) + 2)]
    for mode, cpu in modes.items():
        lines.append(f"| {LABELS.get(mode, mode)} | "
                     + " | ".join(str(cpu.get(n, "")) for n in names)
                     + f" | {cpu['stack_total']} | {cpu['capacity_rps_on_2_cores']} |")
    return lines


def _timeline_table(results: dict[str, Any]) -> list[str]:
    """Medians of the request's segments, from the Kafka records' timestamps."""
    lines = ["", "Where the time goes (medians, ms; from the timestamps of the request's Kafka "
             "records: gateway in, input stage + its audit events + hop, rag worker + hop, "
             "output stage + its audit events + hop, reply hop + gateway out):", "",
             "| mode | phase | gateway in | input stage | rag worker | output stage "
             "| gateway out |", "|---|---|---|---|---|---|---|"]
    for mode, found in results.get("modes", {}).items():
        for phase in ("single", "concurrent"):
            t = found[phase].get("timeline_p50_ms") or {}
            lines.append(f"| {LABELS.get(mode, mode)} | {phase} | {t.get('gateway_in')} | "
                         f"{t.get('input_stage')} | {t.get('rag_worker')} | "
                         f"{t.get('output_stage')} | {t.get('gateway_out')} |")
    return lines


def _load(value: Any) -> str:
    if not value:
        return "?"
    return " / ".join(f"{v:.2f}" for v in value)


def chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    modes = list(results.get("modes", {}))
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    stages = ("total", "guardrails_output", "rest")
    names = {"total": "rag worker", "guardrails_output": "output stage",
             "rest": "input stage + Kafka + gateway"}
    bottom = [0.0] * len(modes)
    for stage in stages:
        values = [results["modes"][m]["single"]["stages_p50_ms"].get(stage) or 0.0
                  for m in modes]
        left.bar(modes, values, bottom=bottom, label=names[stage])
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    left.axhline(60, color="black", linestyle="--", linewidth=1, label="goal p50 60 ms")
    left.set_ylabel("ms (single request, medians)")
    left.set_title("where a retrieval-only request spends its time")
    left.legend(fontsize=8)
    rps = [results["modes"][m]["concurrent"].get("rps") or 0.0 for m in modes]
    right.bar(modes, rps, color="tab:green")
    right.axhline(20, color="black", linestyle="--", linewidth=1, label="goal 20 req/s")
    right.set_ylabel("requests/s at 8 concurrent")
    right.set_title("throughput")
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
