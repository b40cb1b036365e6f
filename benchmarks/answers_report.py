"""Scores, table and plot of the answers benchmark (see ``benchmarks.answers``).

Answerable questions score exact match and token F1 with SQuAD's normalization, citation
markers removed first (a "don't know" scores 0). Citation accuracy: among answerable questions
answered (not "don't know"), the share whose ``[n]`` markers name exactly the question's own
paragraph (an answer without markers is a miss: the reader cannot tell where it came from).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from benchmarks.ingest import percentile
from services.common.evaluation.metrics import exact_match, token_f1
from services.common.grounding.text import is_abstention, strip_citation_markers
from services.rag.handlers import cited_numbers

GOALS = {"exact_match": 0.40, "token_f1": 0.55, "citation_accuracy": 0.70,
         "correct_no_answer": 0.50, "false_no_answer": 0.10, "p50_s": 3.0}
COLUMNS = ("exact_match", "token_f1", "citation_accuracy", "correct_no_answer",
           "false_no_answer", "p50_s", "p90_s", "mean_tokens")


def said_no(outcome: Any, no_answer: str) -> bool:
    return bool(outcome.abstained) or is_abstention(outcome.text, no_answer)


def summarize(outcomes: Sequence[Any], no_answer: str) -> dict[str, float]:
    answerable = [o for o in outcomes if o.answerable]
    unanswerable = [o for o in outcomes if not o.answerable]
    em, f1, cited_right, answered = [], [], 0, 0
    for o in answerable:
        if said_no(o, no_answer):
            em.append(0.0)
            f1.append(0.0)
            continue
        answer = strip_citation_markers(o.text)
        em.append(exact_match(answer, o.answers) or 0.0)
        f1.append(token_f1(answer, o.answers) or 0.0)
        answered += 1
        cited_right += cited_numbers(o.text, 3) == [o.gold_n]
    latencies = [o.latency_s for o in outcomes]
    return {
        "exact_match": _mean(em), "token_f1": _mean(f1),
        "citation_accuracy": cited_right / answered if answered else 0.0,
        "correct_no_answer": _mean([float(said_no(o, no_answer)) for o in unanswerable]),
        "false_no_answer": _mean([float(said_no(o, no_answer)) for o in answerable]),
        "p50_s": percentile(latencies, 50) if latencies else 0.0,
        "p90_s": percentile(latencies, 90) if latencies else 0.0,
        "mean_tokens": _mean([float(o.completion_tokens) for o in outcomes]),
        "answerable": float(len(answerable)), "unanswerable": float(len(unanswerable)),
    }


def _mean(values: Sequence[float]) -> float:
    return round(statistics.fmean(values), 4) if values else 0.0


def margin_text(margin: float | str | None) -> str:
    """A calibrated margin as a reader wants it (a gate records infinity as "never")."""
    if margin is None:
        return "none"
    if margin == "never" or (isinstance(margin, float) and math.isinf(margin)):
        return "never (no margin told unanswerable from answerable better than chance)"
    return f"{float(margin):.2f}"


def write_table(rows: Mapping[str, Mapping[str, float]], margin: float | str | None) -> str:
    """A Markdown table of the rows, the goals on the last line."""
    head = "| mode | EM | F1 | citation acc. | correct don't know | false don't know | " \
           "p50 s | p90 s | tokens |"
    lines = [head, "|---" * (len(COLUMNS) + 1) + "|"]
    for name, row in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{row[c]:.3f}" if c not in ("p50_s", "p90_s",
                     "mean_tokens") else f"{row[c]:.2f}" for c in COLUMNS) + " |")
    lines.append("| goal | ≥ 0.40 | ≥ 0.55 | ≥ 0.70 | ≥ 0.50 | ≤ 0.10 | ≤ 3 | | |")
    lines.append(f"\n(abstention margin calibrated on held-apart articles: {margin_text(margin)})")
    return "\n".join(lines)


def write_plot(rows: Mapping[str, Mapping[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    quality = COLUMNS[:5]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2),
                                      gridspec_kw={"width_ratios": [3, 1]})
    width = 0.8 / max(1, len(rows))
    for k, (name, row) in enumerate(rows.items()):
        xs = [i + k * width for i in range(len(quality))]
        left.bar(xs, [row[c] for c in quality], width, label=name)
        right.bar([k], [row["p50_s"]], 0.6, label=name)
    for i, column in enumerate(quality):
        left.hlines(GOALS[column], i - 0.1, i + 0.9 - 0.1, colors="black", linestyles="dashed")
    left.set_xticks([i + 0.4 - width / 2 for i in range(len(quality))],
                    ["EM", "F1", "citation acc.", "correct\ndon't know", "false\ndon't know"])
    left.set_ylim(0, 1)
    left.set_title("held-out questions (dashed: goal)")
    left.legend(fontsize=8)
    right.axhline(GOALS["p50_s"], color="black", linestyle="dashed")
    right.set_xticks(range(len(rows)), [f"{k + 1}" for k in range(len(rows))])
    right.set_title("p50 latency (s); bars in legend order")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_markdown(report: Mapping[str, Any], path: Path) -> None:
    """docs/benchmarks/answers.md: the command, the split, the table with the goals."""
    rows = report["rows"]
    held, cal = report["held_out"], report["calibration"]
    split = report.get("split", {})
    table = write_table(rows, cal["margin"])
    met = {c: rows["adapter + constraint + abstention (default)"][c] for c in COLUMNS[:6]}
    verdict = ", ".join(f"{c} {'met' if _meets(c, v) else 'missed'} ({v:.3f})"
                        for c, v in met.items())
    text = f"""# Answers from the embedded default: base model and shipped adapter

```bash
{report['command']}
```

Through `LocalBackend.generate` (the rag worker's generation call; no Kafka or Postgres),
retrieval top 3 simulated (the question's paragraph and two others of its article, seeded
order), torch on {report['threads']} threads, machine shared (load average at the end
{', '.join(f'{x:.1f}' for x in report['load_average'])} on {report['cpu_count']} cores).
Held out: {held['answerable']} answerable questions (SQuAD 1.1 articles
{', '.join(split.get('squad_v11', {}).get('heldout', ()))}) and {held['unanswerable']}
unanswerable ones (SQuAD 2.0 articles {', '.join(split.get('squad_v2', {}).get('heldout', ()))}),
the same for every row, none from an article the adapter trained on. The abstention margin was
calibrated on other articles ({cal['answerable']} + {cal['unanswerable']} questions of
{', '.join(split.get('squad_v11', {}).get('calibration', ()))} /
{', '.join(split.get('squad_v2', {}).get('calibration', ()))}): {margin_text(cal['margin'])}.

{table}

The served default ("adapter + constraint + abstention") against the goals: {verdict}.
Raw outcomes: [answers.json](answers.json); plot: [answers.png](answers.png).
"""
    path.write_text(text)


def _meets(column: str, value: float) -> bool:
    if column in ("false_no_answer", "p50_s"):
        return value <= GOALS[column]
    return value >= GOALS[column]
