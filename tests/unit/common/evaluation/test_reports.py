"""report.json / report.md / report.html written from a small run; plots are PNG bytes."""

import json
import re

import pytest

from services.common.evaluation.metrics import score_case
from services.common.evaluation.models import CaseUsage, RunConfig
from services.common.evaluation.plots import latency_boxplot, metric_bars, tag_heatmap
from services.common.evaluation.report_json import build_report, json_safe, write_reports
from services.common.evaluation.report_markdown import render_markdown
from services.common.evaluation.summary import HEADLINE_METRICS, summarize

pytestmark = pytest.mark.unit

TEMPLATE = "I don't know based on the provided documents."
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def run(make_result, fake_embed):
    results = []
    for i in range(8):
        results.append(make_result(
            case_id=f"q{i}", tags=["geo" if i % 2 else "history"],
            question=f"Question {i} <script>alert({i})</script>?",
            answers=["The tower is in Paris"], gold_doc_ids=["d1"],
            answer="The tower is in Paris [1]." if i % 3 else "It is in Rome, call 555-123-4567.",
            cited_doc_ids=["d1"], retrieved_doc_ids=["d1", "d2"] if i % 4 else ["d2"],
            contexts=["The Eiffel Tower is in Paris. It was completed in 1889."],
            latency_ms={"retrieve": 10.0 + i, "generate": 100.0 + 9 * i, "total": 115.0 + 10 * i},
            usage=CaseUsage(prompt_tokens=200 + i, completion_tokens=10, cost_usd=0.0001)))
    results.append(make_result(case_id="refuse-1", expected="refuse", answer=TEMPLATE,
                               abstained=True, tags=["refusal"]))
    results.append(make_result(case_id="broken", status="error", error="generation timeout"))
    per_case = [score_case(r, fake_embed, TEMPLATE) for r in results]
    summary = summarize(per_case, results, n_boot=100, seed=0)
    config = RunConfig(testset="examples/eval.jsonl", testset_hash="sha256:abc", backend="local",
                       model="smollm2", top_k=5, seed=0)
    return results, per_case, summary, config


def test_write_reports(run, tmp_path):
    results, per_case, summary, config = run
    paths = write_reports("run-42", config.model_dump(), summary, results, per_case,
                          tmp_path / "out")
    assert set(paths) == {"json", "markdown", "html"}
    assert [p.name for p in paths.values()] == ["report.json", "report.md", "report.html"]
    assert all(p.exists() and p.stat().st_size > 0 for p in paths.values())
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == \
        ["report.html", "report.json", "report.md"]          # no temporary file left


def test_json_report_is_complete_and_strict(run, tmp_path):
    results, per_case, summary, config = run
    paths = write_reports("run-42", config, summary, results, per_case, tmp_path)

    def no_constants(name):
        raise AssertionError(f"non-standard JSON constant {name}")

    report = json.loads(paths["json"].read_text(), parse_constant=no_constants)
    assert report["schema_version"] == 1 and report["run_id"] == "run-42"
    assert report["config"]["testset_hash"] == "sha256:abc"
    assert report["summary"]["counts"]["cases"] == 10
    assert len(report["cases"]) == 10
    assert report["cases"][0]["case_id"] == "q0"
    assert report["cases"][0]["metrics"] == per_case[0]
    worst = [w["case_id"] for w in report["worst_cases"]]
    # q0, q3, q6 leak a phone number with a low F1; then the error (F1 undefined)
    assert worst[:4] == ["q0", "q3", "q6", "broken"]
    assert "PII in the answer that the context does not hold" in report["worst_cases"][0][
        "reasons"]
    # re-rendering the markdown from the JSON gives the same file
    assert render_markdown(report) == paths["markdown"].read_text()


def test_markdown_report(run, tmp_path):
    results, per_case, summary, config = run
    md = write_reports("run-42", config, summary, results, per_case, tmp_path)["markdown"]
    text = md.read_text()
    for heading in ("# Evaluation report: run-42", "## Configuration",
                    "## Headline metrics (95% CI)", "## Counts", "## Latency (ms", "## Per tag",
                    "## 5 worst cases"):
        assert heading in text
    assert "| testset_hash | sha256:abc |" in text
    assert re.search(r"\| f1 ↑ \| 0\.\d{3} \| \[0\.\d{3}, [01]\.\d{3}\] \| 8 \|", text)
    assert "| total | " in text and "| geo | 4 |" in text
    assert text.count("\n### ") == 5
    assert "toxicity ↓ | unavailable" in text or "| toxicity ↓ | 0." in text


def test_html_report_is_self_contained(run, tmp_path):
    results, per_case, summary, config = run
    html = write_reports("run-42", config, summary, results, per_case, tmp_path)["html"]
    text = html.read_text()
    assert text.startswith("<!DOCTYPE html>") and "<style>" in text
    images = re.findall(r'<img alt="[^"]*" src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    assert len(images) == 3                         # metric bars, latency, per-tag
    without_images = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", text)
    assert "http" not in without_images and "//" not in without_images
    assert "<script" not in without_images and "<link" not in without_images
    assert "&lt;script&gt;alert(" in text          # data is escaped
    assert "The Eiffel Tower is in Paris." in text  # cited context shown for worst cases
    assert "generation timeout" in text
    for metric in HEADLINE_METRICS:
        assert metric in text


def test_plots_return_png_or_none(run):
    results, _, summary, _ = run
    for png in (metric_bars(summary["metrics"]),
                latency_boxplot([r.latency_ms for r in results]),
                tag_heatmap(summary["by_tag"], HEADLINE_METRICS)):
        assert png.startswith(PNG)
    assert metric_bars({}) is None
    assert latency_boxplot([{}]) is None
    assert tag_heatmap({}, HEADLINE_METRICS) is None
    assert tag_heatmap({"t": {"f1": None}}, ["f1"]) is None
    assert metric_bars(summary["metrics"]) == metric_bars(summary["metrics"])  # reproducible


def test_build_report_rejects_misaligned_input(run):
    results, per_case, summary, config = run
    with pytest.raises(ValueError):
        build_report("r", config, summary, results, per_case[:-1])


def test_json_safe():
    import numpy as np

    assert json_safe({"a": float("nan"), "b": (1, np.float32(0.5)), "c": {2}, "d": np.int64(3)}
                     ) == {"a": None, "b": [1, 0.5], "c": [2], "d": 3}
