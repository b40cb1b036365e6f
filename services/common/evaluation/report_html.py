"""report.html: one self-contained page (inline CSS, charts as base64 PNG ``data:`` URIs, no
script, no external resource), so it can be attached to a CI run or mailed and opened offline.

Rendered from the report dict of :func:`report_json.build_report`. Every text from the data
(questions, answers, contexts, config) is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Mapping, Sequence
from typing import Any

from services.common.evaluation.metrics import LOWER_IS_BETTER
from services.common.evaluation.plots import latency_boxplot, metric_bars, tag_heatmap
from services.common.evaluation.report_markdown import ci_label, fmt_value, metric_note, truncate
from services.common.evaluation.summary import HEADLINE_METRICS

__all__ = ["render_html"]

WORST_SHOWN = 10

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d232a;
background:#f6f7f9;line-height:1.45}
main{max-width:1100px;margin:0 auto;padding:24px}
h1{font-size:1.6em;margin:0 0 4px}h2{margin-top:36px;border-bottom:1px solid #d8dde3;
padding-bottom:4px}h3{margin:0 0 8px;font-size:1.05em}
.muted{color:#5d6875;font-size:.9em}
table{border-collapse:collapse;background:#fff;margin:8px 0 16px;font-size:.92em}
th,td{border:1px solid #d8dde3;padding:4px 10px;text-align:left;vertical-align:top}
th{background:#eef1f5}td.num{text-align:right;font-variant-numeric:tabular-nums}
.cards{display:flex;flex-wrap:wrap;gap:12px}
.card{background:#fff;border:1px solid #d8dde3;border-radius:6px;padding:10px 14px;
min-width:150px}
.card .v{font-size:1.5em;font-weight:600}.card .ci{color:#5d6875;font-size:.85em}
img{max-width:100%;background:#fff;border:1px solid #d8dde3;border-radius:4px;margin:6px 0}
.case{background:#fff;border:1px solid #d8dde3;border-left:4px solid #c0504d;border-radius:6px;
padding:12px 16px;margin:12px 0}
.case .label{font-weight:600;font-size:.85em;color:#5d6875;text-transform:uppercase;
margin-top:8px}
.case pre,.ctx pre{white-space:pre-wrap;word-wrap:break-word;background:#f6f7f9;padding:8px;
border-radius:4px;margin:4px 0;font-family:inherit;font-size:.92em}
.reasons{color:#a33a36;font-weight:600}
details summary{cursor:pointer;color:#3b6ea8}
"""


def _e(value: Any) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return html.escape(text, quote=True)


def _img(png: bytes | None, alt: str) -> str:
    if not png:
        return f'<p class="muted">{_e(alt)}: no data.</p>'
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]],
           numeric: Sequence[bool] | None = None) -> str:
    numeric = numeric or [False] * len(header)
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f'<td{" class=num" if num else ""}>{_e(c)}</td>'
                         for c, num in zip(row, numeric, strict=False)) + "</tr>"
        for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _metric_rows(metrics: Mapping[str, Mapping[str, Any]], names: Sequence[str]) -> list[list]:
    rows = []
    for name in names:
        entry = metrics[name]
        arrow = "↓" if name in LOWER_IS_BETTER else "↑"
        note = metric_note(name, entry)
        if note:
            rows.append([f"{name} {arrow}", note, "", 0])
        else:
            rows.append([f"{name} {arrow}", fmt_value(name, entry.get("mean")),
                         f"[{fmt_value(name, entry.get('lo'))}, "
                         f"{fmt_value(name, entry.get('hi'))}]", entry.get("n", 0)])
    return rows


def _cards(metrics: Mapping[str, Mapping[str, Any]], label: str) -> str:
    cards = []
    for name in HEADLINE_METRICS:
        entry = metrics.get(name)
        if entry is None:
            continue
        note = metric_note(name, entry)
        value = note or fmt_value(name, entry.get("mean"))
        ci = "" if note else (f"{label} [{fmt_value(name, entry.get('lo'))}, "
                              f"{fmt_value(name, entry.get('hi'))}], n={entry.get('n', 0)}")
        cards.append(f'<div class="card"><div class="muted">{_e(name)}</div>'
                     f'<div class="v">{_e(value)}</div><div class="ci">{_e(ci)}</div></div>')
    return f'<div class="cards">{"".join(cards)}</div>'


def _contexts(case: Mapping[str, Any]) -> str:
    contexts = case.get("contexts") or []
    cited = case.get("cited_doc_ids") or []
    if not contexts:
        return '<p class="muted">No cited context.</p>'
    labels = cited if len(cited) == len(contexts) else [f"context {i}" for i in
                                                        range(1, len(contexts) + 1)]
    items = "".join(
        f'<div class="ctx"><span class="muted">[{i}] {_e(label)}</span>'
        f"<pre>{_e(truncate(text, 1500))}</pre></div>"
        for i, (label, text) in enumerate(zip(labels, contexts, strict=True), start=1))
    return f"<details><summary>cited context ({len(contexts)})</summary>{items}</details>"


def _case(item: Mapping[str, Any], case: Mapping[str, Any]) -> str:
    scores = case.get("metrics") or {}
    references = case.get("answers") or []
    reference = ("\n".join(f"• {r}" for r in references) if references
                 else f"(no reference; expected: {case.get('expected', '?')})")
    shown = ", ".join(f"{m} {fmt_value(m, v)}" for m, v in scores.items()
                      if v is not None and m in (*HEADLINE_METRICS, "rouge_l", "mrr",
                                                 "citation_precision", "citation_recall",
                                                 "false_abstention", "pii_leak"))
    gold = ", ".join(case.get("gold_doc_ids") or []) or "–"
    cited = ", ".join(case.get("cited_doc_ids") or []) or "–"
    return (
        f'<div class="case"><h3>{_e(item.get("case_id"))}</h3>'
        f'<div class="reasons">{_e("; ".join(item.get("reasons") or []))}</div>'
        f'<div class="muted">tags: {_e(", ".join(case.get("tags") or []) or "–")} · '
        f'status: {_e(case.get("status", ""))} · gold: {_e(gold)} · cited: {_e(cited)}</div>'
        f'<div class="label">Question</div><pre>{_e(truncate(case.get("question"), 1000))}</pre>'
        f'<div class="label">Reference</div><pre>{_e(truncate(reference, 1000))}</pre>'
        f'<div class="label">Answer</div>'
        f'<pre>{_e(truncate(case.get("answer"), 2000) or "(empty)")}</pre>'
        f'<div class="muted">{_e(shown)}</div>{_contexts(case)}</div>')


def render_html(report: Mapping[str, Any]) -> str:
    summary = report.get("summary") or {}
    metrics = summary.get("metrics") or {}
    label = ci_label(summary)
    cases = report.get("cases") or []
    run_id = report.get("run_id", "")
    parts = [f"<h1>Evaluation report</h1><p class=muted>run {_e(run_id)} · "
             f"{len(cases)} cases · intervals: {_e(label)}, percentile bootstrap</p>"]

    config = report.get("config") or {}
    parts.append("<h2>Configuration</h2>" + _table(["setting", "value"], list(config.items())))
    parts.append(f"<h2>Headline metrics</h2>{_cards(metrics, label)}")
    parts.append(_img(metric_bars(metrics, title=f"Metrics (mean, {label})"), "metric means"))

    counts = summary.get("counts") or {}
    parts.append("<h2>Counts</h2>" + _table(["count", "n"], list(counts.items()), [False, True]))

    parts.append("<h2>All metrics</h2>" + _table(
        ["metric", "mean", label, "n"], _metric_rows(metrics, list(metrics)),
        [False, True, True, True]))

    latency = summary.get("latency") or {}
    parts.append("<h2>Latency (ms)</h2>")
    parts.append(_table(["stage", "p50", "p95", "mean", "n"],
                        [[s, fmt_value("x_ms", v.get("p50")), fmt_value("x_ms", v.get("p95")),
                          fmt_value("x_ms", v.get("mean")), v.get("n", 0)]
                         for s, v in latency.items()], [False, True, True, True, True]))
    ok = [c.get("latency_ms") or {} for c in cases
          if c.get("status") != "error" and not c.get("error")]
    parts.append(_img(latency_boxplot(ok), "latency per stage"))

    tokens = summary.get("tokens") or {}
    parts.append("<h2>Tokens and cost</h2>" + _table(
        ["", "total", "p50 per case"],
        [[k, v.get("total"), fmt_value("tokens", v.get("p50"))] for k, v in tokens.items()]
        + [["cost (USD)", fmt_value("cost_usd", summary.get("cost_usd")), ""]],
        [False, True, True]))

    by_tag = summary.get("by_tag") or {}
    tag_counts = summary.get("tag_counts") or {}
    parts.append("<h2>Per tag</h2>")
    if by_tag:
        parts.append(_img(tag_heatmap(by_tag, HEADLINE_METRICS), "per-tag means"))
        parts.append(_table(
            ["tag", "cases", *HEADLINE_METRICS],
            [[t, tag_counts.get(t, ""), *(fmt_value(m, v.get(m)) for m in HEADLINE_METRICS)]
             for t, v in by_tag.items()], [False] + [True] * (1 + len(HEADLINE_METRICS))))
    else:
        parts.append('<p class="muted">No tagged cases.</p>')

    worst = (report.get("worst_cases") or [])[:WORST_SHOWN]
    parts.append(f"<h2>Worst cases ({len(worst)})</h2><p class=muted>Errors, wrong "
                 "abstentions and PII leaks first, then lowest F1 or faithfulness.</p>")
    if not worst:
        parts.append('<p class="muted">No case went wrong.</p>')
    for item in worst:
        index = item.get("index", -1)
        parts.append(_case(item, cases[index] if 0 <= index < len(cases) else {}))

    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>Evaluation report {_e(run_id)}</title><style>{_CSS}</style></head>"
            f"<body><main>{''.join(parts)}</main></body></html>\n")
