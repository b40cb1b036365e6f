"""The guardrails benchmark's outputs: JSON (raw), Markdown (tables) and a PNG chart."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

LAYERS = ("rules", "similarity", "classifier", "rules+similarity", "all layers")


def _fmt(value: Any) -> str:  # noqa: ANN401 - numbers or None
    return "—" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def markdown(results: dict[str, Any]) -> str:
    inj, pii, lat = results["injections"], results["pii"], results["latency"]
    t = inj["thresholds"]
    lines = [
        "# Guardrails benchmark",
        "",
        f"Datasets: `{results['datasets']['injections']}` ({inj['records']} texts, "
        f"{inj['injections']} injections) and `{results['datasets']['pii']}` "
        f"({pii['records']} sentences). Machine: {results['machine']['cpus']} CPUs, "
        f"{results['machine']['at']}, load average at the end "
        f"{results['machine'].get('load_average', 'not recorded')}, torch threads "
        f"{results['machine'].get('torch_threads', 'not recorded')}.",
        "",
        f"## Prompt injection ({inj['folds']}-fold held-out; thresholds: rules {t['rules']}, "
        f"similarity {t['similarity']}, classifier {t['classifier']})",
        "",
        "Classifier and similarity corpus (seed file + training folds' attacks) never see the "
        "fold they score. Baseline: rules alone.",
        "",
        "| layer | detection rate | FPR | precision | F1 | ROC-AUC |",
        "|---|---|---|---|---|---|",
    ]
    for layer in LAYERS:
        m = inj["plain"][layer]
        lines.append(f"| {layer} | {_fmt(m['detection_rate'])} | {_fmt(m['fpr'])} | "
                     f"{_fmt(m['precision'])} | {_fmt(m['f1'])} | {_fmt(m['roc_auc'])} |")
    lines += ["", "### Disguised (same held-out texts, transformed)", "",
              "| disguise | " + " | ".join(f"{layer} DR / FPR" for layer in LAYERS) + " |",
              "|---" * (len(LAYERS) + 1) + "|"]
    for name, summary in inj["disguised"].items():
        cells = [f"{summary[layer]['detection_rate']:.3f} / {summary[layer]['fpr']:.3f}"
                 for layer in LAYERS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    docs = results.get("documents")
    if docs:
        lines += ["", f"## Documents: the ingest scan (threshold {docs['threshold']})", "",
                  f"{docs['paragraphs']} ordinary paragraphs: {docs['clean_marked']:.3f} marked "
                  f"(false marks); the same paragraphs with an attack inserted: "
                  f"{docs['poisoned_marked']:.3f} marked."]
    lines += ["", f"## PII (min score {pii['min_score']}; span-overlap matching)", "",
              f"Redaction recall (gold spans covered by any finding): "
              f"**{_fmt(pii['redaction_recall'])}** of {pii['gold_spans']} spans.", "",
              "| dataset entity | detector types | support | precision | recall | F1 | FP |",
              "|---|---|---|---|---|---|---|"]
    for name, e in pii["entities"].items():
        lines.append(f"| {name} | {', '.join(e['detector_types'])} | {e['support']} | "
                     f"{_fmt(e['precision'])} | {_fmt(e['recall'])} | {_fmt(e['f1'])} | "
                     f"{e['fp']} |")
    if pii["unsupported"]:
        lines += ["", "Not recognized by any detector (no Presidio type): " + ", ".join(
            f"{k} ({v})" for k, v in pii["unsupported"].items())]
    lines += ["", f"## Latency added per stage ({lat['input']['questions']} questions; ms)", "",
              "| input stage check | all layers p50 | all layers p95 | rules only p50 | "
              "rules only p95 |", "|---|---|---|---|---|"]
    for check, row in lat["input"]["all layers"].items():
        base = lat["input"]["rules only"].get(check, {})
        lines.append(f"| {check} | {row['p50']} | {row['p95']} | {base.get('p50', '—')} | "
                     f"{base.get('p95', '—')} |")
    out = lat.get("output", {})
    if "total" in out:
        lines += ["", f"Output stage (all checks, judge off, {out['drafts']} drafts): "
                      f"p50 {out['total']['p50']} ms, p95 {out['total']['p95']} ms."]
    else:
        lines += ["", f"Output stage: not measured ({out.get('error', 'unavailable')})."]
    return "\n".join(lines) + "\n"


def write_chart(results: dict[str, Any], path: Path) -> Path:
    inj, pii, lat = results["injections"], results["pii"], results["latency"]
    fig, (ax1, ax2, ax3, ax4) = plt.subplots(1, 4, figsize=(22, 5))
    xs = range(len(LAYERS))
    ax1.bar([x - 0.2 for x in xs], [inj["plain"][layer]["detection_rate"] for layer in LAYERS],
            width=0.4, color="#2a7ab9", label="detection rate")
    ax1.bar([x + 0.2 for x in xs], [inj["plain"][layer]["fpr"] for layer in LAYERS], width=0.4,
            color="#d9534f", label="false-positive rate")
    ax1.set_xticks(list(xs), LAYERS, rotation=20)
    ax1.set_ylim(0, 1)
    ax1.set_title(f"Injection detection ({inj['folds']}-fold held-out)")
    ax1.legend()
    names = list(inj["disguised"])
    for offset, layer, color in ((-0.25, "rules", "#999"), (0.0, "classifier", "#f0ad4e"),
                                 (0.25, "all layers", "#2a7ab9")):
        ax2.bar([i + offset for i in range(len(names))],
                [inj["disguised"][n][layer]["detection_rate"] for n in names], width=0.25,
                color=color, label=layer)
    ax2.set_xticks(range(len(names)), names, rotation=20)
    ax2.set_ylim(0, 1)
    ax2.set_title("Detection rate on disguised attacks")
    ax2.legend()
    entities = [n for n, e in pii["entities"].items() if e["support"]]
    ax3.barh([i + 0.2 for i in range(len(entities))],
             [pii["entities"][n]["precision"] or 0 for n in entities], height=0.4,
             color="#5cb85c", label="precision")
    ax3.barh([i - 0.2 for i in range(len(entities))],
             [pii["entities"][n]["recall"] or 0 for n in entities], height=0.4,
             color="#2a7ab9", label="recall")
    ax3.set_yticks(range(len(entities)), entities)
    ax3.set_xlim(0, 1)
    ax3.set_title(f"PII per entity (redaction recall {pii['redaction_recall']})")
    ax3.legend()
    checks = [c for c in lat["input"]["all layers"] if c != "total"]
    ax4.barh(checks, [lat["input"]["all layers"][c]["p95"] for c in checks], color="#f0ad4e",
             label="p95")
    ax4.barh(checks, [lat["input"]["all layers"][c]["p50"] for c in checks], color="#2a7ab9",
             label="p50")
    ax4.set_xscale("log")
    ax4.set_xlabel("ms (log scale)")
    total = lat["input"]["all layers"]["total"]
    ax4.set_title(f"Input stage latency (total p50 {total['p50']} / p95 {total['p95']} ms)")
    ax4.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def report(results: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "guardrails.json").write_text(json.dumps(results, indent=2))
    text = markdown(results)
    (out / "guardrails.md").write_text(text)
    chart = write_chart(results, out / "guardrails.png")
    print(text)
    print(f"results: {out / 'guardrails.json'}, {out / 'guardrails.md'}; chart: {chart}")
