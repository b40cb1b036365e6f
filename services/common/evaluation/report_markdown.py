"""report.md: a run summary a person reads in a pull request or a terminal.

Rendered from the report dict of :func:`report_json.build_report` (or a loaded report.json):
configuration, headline metrics with their confidence intervals, all metrics, counts, latency,
tokens and cost, per-tag table, and the worst cases. The formatting helpers are shared with
the HTML report.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from services.common.evaluation.metrics import LOWER_IS_BETTER
from services.common.evaluation.summary import HEADLINE_METRICS

__all__ = ["ci_label", "fmt_value", "metric_note", "render_markdown", "truncate"]

WORST_SHOWN = 5


def fmt_value(name: str, value: Any) -> str:
    """A metric value for display: 3 decimals for scores, 1 for ms and tokens, 6 for USD."""
    if value is None:
        return "–"
    if not isinstance(value, int | float):
        return str(value)
    if name == "cost_usd":
        return f"{value:.6f}"
    if name.endswith("_ms") or name.endswith("tokens"):
        return f"{value:.1f}"
    return f"{value:.3f}"


def metric_note(name: str, entry: Mapping[str, Any]) -> str:
    """Why a metric has no value: toxicity needs a package, others are undefined."""
    if entry.get("n"):
        return ""
    if name == "toxicity":
        return "unavailable (install alt-profanity-check)"
    return "undefined for every case"


def ci_label(summary: Mapping[str, Any]) -> str:
    alpha = (summary.get("bootstrap") or {}).get("alpha", 0.05)
    return f"{100 * (1 - alpha):g}% CI"


def truncate(text: str | None, limit: int) -> str:
    text = text or ""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _cell(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").replace("\r", " ")


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines + [""]


def _metric_row(name: str, entry: Mapping[str, Any]) -> list[str]:
    note = metric_note(name, entry)
    direction = "↓" if name in LOWER_IS_BETTER else "↑"
    if note:
        return [f"{name} {direction}", note, "", "0"]
    return [f"{name} {direction}", fmt_value(name, entry.get("mean")),
            f"[{fmt_value(name, entry.get('lo'))}, {fmt_value(name, entry.get('hi'))}]",
            str(entry.get("n", 0))]


def _quote(text: str) -> str:
    return "\n".join("> " + line if line else ">" for line in (text or "(empty)").splitlines())


def render_markdown(report: Mapping[str, Any]) -> str:
    summary = report.get("summary") or {}
    metrics = summary.get("metrics") or {}
    label = ci_label(summary)
    out = [f"# Evaluation report: {report.get('run_id', '')}", ""]

    out += ["## Configuration", ""]
    out += _table(["setting", "value"], [[k, v] for k, v in (report.get("config") or {}).items()])

    out += [f"## Headline metrics ({label})", ""]
    out += _table(["metric", "mean", label, "n"],
                  [_metric_row(m, metrics[m]) for m in HEADLINE_METRICS if m in metrics])

    counts = summary.get("counts") or {}
    out += ["## Counts", ""]
    out += _table(["count", "n"], [[k, v] for k, v in counts.items()])

    out += [f"## All metrics ({label}; ↑ higher is better, ↓ lower is better)", ""]
    out += _table(["metric", "mean", label, "n"],
                  [_metric_row(m, e) for m, e in metrics.items()])

    latency = summary.get("latency") or {}
    out += ["## Latency (ms, cases without error)", ""]
    if latency:
        out += _table(["stage", "p50", "p95", "mean", "n"],
                      [[s, fmt_value("x_ms", v.get("p50")), fmt_value("x_ms", v.get("p95")),
                        fmt_value("x_ms", v.get("mean")), v.get("n", 0)]
                       for s, v in latency.items()])
    else:
        out += ["No latency recorded.", ""]

    tokens = summary.get("tokens") or {}
    out += ["## Tokens and cost", ""]
    out += _table(["", "total", "p50 per case"],
                  [[k, v.get("total"), fmt_value("tokens", v.get("p50"))]
                   for k, v in tokens.items()]
                  + [["cost (USD)", fmt_value("cost_usd", summary.get("cost_usd")), ""]])

    by_tag = summary.get("by_tag") or {}
    tag_counts = summary.get("tag_counts") or {}
    out += ["## Per tag (means)", ""]
    if by_tag:
        out += _table(["tag", "cases", *HEADLINE_METRICS],
                      [[t, tag_counts.get(t, ""), *(fmt_value(m, v.get(m))
                                                     for m in HEADLINE_METRICS)]
                       for t, v in by_tag.items()])
    else:
        out += ["No tagged cases.", ""]

    cases = report.get("cases") or []
    worst = (report.get("worst_cases") or [])[:WORST_SHOWN]
    out += [f"## {len(worst)} worst cases", ""]
    if not worst:
        out += ["No case went wrong.", ""]
    for item in worst:
        case = cases[item["index"]] if 0 <= item.get("index", -1) < len(cases) else {}
        scores = case.get("metrics") or {}
        out += [f"### {item['case_id']}: {'; '.join(item.get('reasons') or [])}", ""]
        out += ["**Question**", "", _quote(truncate(case.get("question"), 600)), ""]
        references = case.get("answers") or []
        out += ["**Reference**", "",
                _quote(truncate(" | ".join(references), 600) if references
                       else f"(none; expected: {case.get('expected', '?')})"), ""]
        out += ["**Answer**", "", _quote(truncate(case.get("answer"), 1200)), ""]
        shown = [m for m in ("f1", "exact_match", "faithfulness", "hit@5", "citation_precision",
                             "abstention_correct", "false_abstention", "pii_leak")
                 if scores.get(m) is not None]
        if shown:
            out += [", ".join(f"{m} {fmt_value(m, scores[m])}" for m in shown), ""]
        cited = case.get("cited_doc_ids") or []
        gold = case.get("gold_doc_ids") or []
        out += [f"cited: {', '.join(cited) or '–'}; gold: {', '.join(gold) or '–'}", ""]
    return "\n".join(out).rstrip() + "\n"
