"""The guardrails benchmark's outputs: JSON (raw), Markdown (tables) and a PNG chart with ROC
curves."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

METHODS = ("rules", "tfidf_lr", "head", "similarity", "rules+tfidf_lr", "rules+head",
           "rules+head+similarity")
LABELS = {"rules": "rules", "tfidf_lr": "TF-IDF+LR (baseline)", "head": "MiniLM head",
          "similarity": "similarity", "rules+tfidf_lr": "rules+TF-IDF (baseline system)",
          "rules+head": "rules+head",
          "rules+head+similarity": "**rules+head+similarity (default)**"}


def _fmt(value: Any) -> str:  # noqa: ANN401 - numbers or None
    return "—" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def _cell(m: dict[str, Any]) -> str:
    """Detection on attacks and false positives on benign texts, whichever the rows have."""
    parts = []
    if m.get("detection_rate") is not None:
        parts.append(f"DR {m['detection_rate']:.3f}")
    if m.get("fpr") is not None:
        parts.append(f"FPR {m['fpr']:.3f}")
    return " / ".join(parts) or "—"


def _injection(inj: dict[str, Any]) -> list[str]:
    lines = ["## Prompt injection: leave one source out", "",
             "Each row's source is scored by models trained on the other sources only; learned "
             "thresholds are calibrated on out-of-fold scores of the training sources (2% "
             "false positives), never on the row's source. Rules and similarity use the "
             "policy thresholds.", "",
             "| source | texts | attacks |", "|---|---:|---:|"]
    lines += [f"| {n} | {s['texts']} | {s['attacks']} |" for n, s in inj["sources"].items()]
    lines += ["", "| held-out source | " + " | ".join(LABELS[m] for m in METHODS) + " |",
              "|---" * (len(METHODS) + 1) + "|"]
    for name, row in {**inj["per_source"], "pooled (all held-out scores)": inj["pooled"]}.items():
        lines.append(f"| {name} | " + " | ".join(_cell(row[m]) for m in METHODS) + " |")
    lines += ["", "ROC-AUC on held-out sources with both classes: " + "; ".join(
        f"{n}: " + ", ".join(f"{m} {_fmt(r[m]['roc_auc'])}" for m in ("rules", "tfidf_lr", "head",
                                                                        "similarity"))
        for n, r in inj["per_source"].items() if r["head"]["roc_auc"] is not None) + "; pooled: "
        + ", ".join(f"{m} {_fmt(inj['pooled'][m]['roc_auc'])}"
                    for m in ("rules", "tfidf_lr", "head", "similarity")) + "."]
    lines += ["", "### Disguised (every held-out text, transformed)", "",
              "| disguise | " + " | ".join(LABELS[m] for m in METHODS) + " |",
              "|---" * (len(METHODS) + 1) + "|"]
    for name, row in inj["disguised"].items():
        lines.append(f"| {name} | " + " | ".join(_cell(row[m]) for m in METHODS) + " |")
    confirmed = inj.get("confirmed", {})
    if confirmed:
        lines += ["", "### Similarity layer, in its role: disguised repeats of confirmed attacks",
                  "", "Every source's attacks added to the corpus (as `customllm guardrails "
                  "attacks add` does), then their disguised forms scored; false positives on "
                  "every benign text in the same disguise. Rules+head scores are the held-out "
                  "ones above.", "",
                  "| disguise | similarity | rules+head | rules+head+similarity |",
                  "|---|---|---|---|"]
        for name, row in confirmed.items():
            lines.append(f"| {name} | " + " | ".join(
                _cell(row[m]) for m in ("similarity", "rules+head", "rules+head+similarity"))
                + " |")
    kinds = ("rules+tfidf_lr", "head", "rules+head+similarity")
    lines += ["", "### Per kind of text (held out with its source)", "",
              "| source/kind | n | " + " | ".join(LABELS[m] for m in kinds) + " |",
              "|---|---:|" + "---|" * len(kinds)]
    for name, row in inj["per_kind"].items():
        lines.append(f"| {name} | {row['head']['n']} | "
                     + " | ".join(_cell(row[m]) for m in kinds) + " |")
    lines += ["", "Calibrated thresholds per held-out source: " + "; ".join(
        f"{n}: head {t['head']}, TF-IDF {t['tfidf_lr']}" for n, t in inj["thresholds"].items())
        + "."]
    return lines


def hate_markdown(h: dict[str, Any]) -> list[str]:
    t = h["thresholds"]
    methods = [m for m in h["tweet_test"]]
    tpl = h.get("templated_cases")
    lines = ["", "## Hate vs. offensive", "",
             f"Tweets: {h['tweets']['train']} for training, {h['tweets']['test']} held out "
             f"({h['tweets']['test_hate']} hate). Project-written training cases: "
             f"{h['own_training_cases']['cases']} ({h['own_training_cases']['hate']} hateful, "
             f"weight {h['own_training_cases']['weight']:g})"
             + (f"; templated: {tpl['cases']} ({tpl['hate']} hateful, weight "
                f"{tpl['weight']:g})" if tpl else "")
             + f". Functional test cases, never trained on: {h['functional_cases']['cases']} "
             f"({h['functional_cases']['hate']} hateful). "
             "Thresholds: " + ", ".join(f"{k} {v}" for k, v in t.items()) + " (learned ones "
             "calibrated on training folds to 5% false positives; toxicity: the policy's).", ""]
    selection = h.get("selection")
    if selection:
        lines += ["Recipe chosen first, on held-out templates (trained with one template-"
                  "disjoint half of the templated cases, scored on the other, both ways; the "
                  "functional cases play no part):", "",
                  "| recipe | detection | FPR on non-hateful kinds | margin |",
                  "|---|---:|---:|---:|"]
        for name, row in selection.items():
            if name == "chosen":
                continue
            mark = "**" if name == selection["chosen"] else ""
            lines.append(f"| {mark}{name}{mark} | {row['detection_rate']:.3f} | "
                         f"{row['fpr_hard']:.3f} | {row['margin']:.3f} |")
        lines.append("")
    lines += ["| evaluation | method | hate detection | false positives | FPR on hard "
              "non-hateful | ROC-AUC |", "|---|---|---:|---:|---:|---:|"]
    names = {"tweet_test": "tweets, held-out 20%", "functional": "functional cases"}
    for key, label in names.items():
        for method in methods:
            m = h[key][method]
            lines.append(f"| {label} | {method} | {_fmt(m['detection_rate'])} | "
                         f"{_fmt(m['fpr'])} | {_fmt(m.get('fpr_hard'))} | "
                         f"{_fmt(m.get('roc_auc'))} |")
    ordinary = h.get("ordinary_flagged") or {}
    if ordinary:
        heads = [m for m in methods if m in next(iter(ordinary.values()))]
        lines += ["", "Benign texts no head trained on, share flagged (lower is better):", "",
                  "| texts | n | " + " | ".join(heads) + " |",
                  "|---|---:|" + "---:|" * len(heads)]
        for name, row in ordinary.items():
            lines.append(f"| {name} | {row['n']} | "
                         + " | ".join(f"{row[m]:.4f}" for m in heads) + " |")
    fn = h["functional"]
    kinds = [k for k, v in fn[methods[0]].items() if isinstance(v, dict)]
    lines += ["", "Share flagged per kind of functional case (hate kinds: higher is better; "
                  "the others: lower is better):", "",
              "| kind | n | " + " | ".join(methods) + " |",
              "|---|---:|" + "---:|" * len(methods)]
    for kind in kinds:
        lines.append(f"| {kind} | {fn[methods[0]][kind]['n']} | "
                     + " | ".join(f"{fn[m][kind]['flagged']:.3f}" for m in methods) + " |")
    return lines


def hate_operating_points(ax: Any, h: dict[str, Any]) -> None:  # noqa: ANN401 - an Axes
    """Each method's detection against its false positives on the hard non-hateful
    functional cases, with the goal's corner shaded."""
    ax.axvspan(0, 0.10, ymin=0.80, ymax=1.0, color="#dff0d8", label="goal (≥ 0.80 at ≤ 0.10)")
    for name, m in h["functional"].items():
        ax.scatter(m["fpr_hard"], m["detection_rate"], s=40)
        ax.annotate(name, (m["fpr_hard"], m["detection_rate"]), fontsize=7,
                    xytext=(4, 3), textcoords="offset points")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("false positives, hard non-hateful cases")
    ax.set_ylabel("hate detection")
    ax.set_title("Functional cases (never trained on)")
    ax.legend(loc="lower right", fontsize=8)


def hate_panels(ax_roc: Any, ax_points: Any, h: dict[str, Any]) -> None:  # noqa: ANN401
    _roc(ax_roc, h["roc"]["y"], {m: v for m, v in h["roc"].items() if m != "y"},
         "Hate vs. not hate, held-out tweets")
    hate_operating_points(ax_points, h)


def hate_plot(h: dict[str, Any], path: Path) -> Path:
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5.5))
    hate_panels(ax1, ax2, h)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def markdown(results: dict[str, Any]) -> str:
    pii, lat, machine = results["pii"], results["latency"], results["machine"]
    lines = ["# Guardrails benchmark", "",
             "Datasets: " + ", ".join(f"`{v}`" for v in results["datasets"].values())
             + f". Machine: {machine['cpus']} CPUs, {machine['at']}, load average at the end "
             f"{machine.get('load_average')}, torch threads {machine.get('torch_threads')}.", ""]
    lines += _injection(results["injections"])
    lines += hate_markdown(results["hate"])
    docs = results.get("documents")
    if docs:
        lines += ["", f"## Documents: the ingest scan (rules, threshold {docs['threshold']})", "",
                  f"{docs['paragraphs']} ordinary paragraphs: {docs['clean_marked']:.3f} marked "
                  f"(false marks); the same paragraphs with an attack inserted: "
                  f"{docs['poisoned_marked']:.3f} marked. For comparison, the MiniLM head "
                  f"(threshold {docs['head_threshold']}), which the ingest worker does not run: "
                  f"{docs['head_clean_marked']:.3f} / {docs['head_poisoned_marked']:.3f} "
                  f"({docs['note']})."]
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
    inp = lat["input"]
    lines += ["", f"## Latency per input check ({inp['questions']} texts from the injection "
                  f"sources, median {inp['chars']['p50']} characters, longest "
                  f"{inp['chars']['max']}; ms)", "",
              "| check | default policy p50 | p95 | rules only p50 | p95 |",
              "|---|---|---|---|---|"]
    for check, row in inp["default policy"].items():
        base = inp["rules only"].get(check, {})
        lines.append(f"| {check} | {row['p50']} | {row['p95']} | {base.get('p50', '—')} | "
                     f"{base.get('p95', '—')} |")
    out = lat.get("output", {})
    if "total" in out:
        lines += ["", f"Output stage (all checks, judge off, {out['drafts']} drafts): "
                      f"p50 {out['total']['p50']} ms, p95 {out['total']['p95']} ms."]
    return "\n".join(lines) + "\n"


def _roc(ax: Any, y: list[int], scores: dict[str, list[float]], title: str) -> None:  # noqa: ANN401
    from sklearn.metrics import roc_auc_score, roc_curve

    for name, s in scores.items():
        fpr, tpr, _ = roc_curve(y, s)
        ax.plot(fpr, tpr, label=f"{name} (AUC {roc_auc_score(y, s):.3f})")
    ax.plot([0, 1], [0, 1], color="#ccc", linestyle="--")
    ax.set_xlabel("false-positive rate")
    ax.set_ylabel("detection rate")
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)


def write_chart(results: dict[str, Any], path: Path) -> Path:
    inj, hate = results["injections"], results["hate"]
    fig, (ax1, ax2, ax3, ax4) = plt.subplots(1, 4, figsize=(25, 5.5))
    y = inj["roc"]["head"]["y"]
    _roc(ax1, y, {m: inj["roc"][m]["scores"] for m in ("rules", "tfidf_lr", "head",
                                                      "similarity")},
         "Injection ROC, leave-one-source-out (pooled)")
    sources = list(inj["per_source"])
    for offset, method, color in ((-0.2, "rules+tfidf_lr", "#999"),
                                  (0.2, "rules+head+similarity", "#2a7ab9")):
        values = [inj["per_source"][s][method]["detection_rate"]
                  if inj["per_source"][s][method]["detection_rate"] is not None
                  else 1 - inj["per_source"][s][method]["fpr"] for s in sources]
        ax2.bar([i + offset for i in range(len(sources))], values, width=0.4, color=color,
                label=LABELS[method].strip("*"))
    ax2.set_xticks(range(len(sources)), sources, rotation=15, fontsize=8)
    ax2.set_ylim(0, 1)
    ax2.set_title("Held-out source: detection (attacks) or 1 − FPR (benign)", fontsize=10)
    ax2.legend(fontsize=8)
    hate_panels(ax3, ax4, hate)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def report(results: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    # The per-text scores behind the ROC curves are in the chart; the JSON keeps the figures.
    slim = {**results, "injections": {k: v for k, v in results["injections"].items()
                                      if k != "roc"},
            "hate": {k: v for k, v in results["hate"].items() if k != "roc"}}
    (out / "guardrails.json").write_text(json.dumps(slim, indent=1))
    text = markdown(results)
    (out / "guardrails.md").write_text(text)
    chart = write_chart(results, out / "guardrails.png")
    print(text)
    print(f"results: {out / 'guardrails.json'}, {out / 'guardrails.md'}; chart: {chart}")
