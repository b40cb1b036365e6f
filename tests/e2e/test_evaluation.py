"""The evaluation harness end to end, as a user runs it: import a SQuAD-format corpus, publish
and index it, evaluate through the real query path and the local model, write the reports,
resume a complete run without asking anything again, and let the gate catch a planted
regression (the "nocontext" prompt template drops the retrieved context)."""

from __future__ import annotations

import asyncio
import json
import re

import pytest
from typer.testing import CliRunner

from services.cli.main import app
from services.common.evaluation import store
from services.common.evaluation.runner import run_eval
from services.common.evaluation.runs import build_run_config, load_run
from services.common.evaluation.testsets import read_jsonl
from tests.support.documents import unique_prefix

pytestmark = pytest.mark.e2e

cli = CliRunner()

# Fictional facts: the model cannot know them without the context, so dropping the context is
# a real, measurable regression.
CORPUS = {"version": "v2.0", "data": [
    {"title": "Zorblax_Reactor", "paragraphs": [{
        "context": "The Zorblax reactor in building seven is cooled with liquid nitrogen. It "
                   "was designed by the engineer Miriam Okafor in 2019, and its operators "
                   "replace the nitrogen tanks every Tuesday morning.",
        "qas": [
            {"id": "z1", "question": "What is the Zorblax reactor cooled with?",
             "answers": [{"text": "liquid nitrogen", "answer_start": 53}],
             "is_impossible": False},
            {"id": "z2", "question": "Who designed the Zorblax reactor?",
             "answers": [{"text": "Miriam Okafor", "answer_start": 102}],
             "is_impossible": False},
            {"id": "z3", "question": "How much did the Zorblax reactor cost to build?",
             "answers": [], "is_impossible": True}]}]},
    {"title": "Lisbon_Rooftop_Garden", "paragraphs": [{
        "context": "The rooftop garden of the Lisbon office grows tomatoes, basil and lemon "
                   "trees. Volunteers water the plants at noon, and the harvest is shared in "
                   "the canteen every Friday.",
        "qas": [
            {"id": "g1", "question": "Which plants grow in the Lisbon rooftop garden?",
             "answers": [{"text": "tomatoes, basil and lemon trees", "answer_start": 46}],
             "is_impossible": False},
            {"id": "g2", "question": "When do volunteers water the rooftop garden plants?",
             "answers": [{"text": "at noon", "answer_start": 107}],
             "is_impossible": False}]}]},
    {"title": "Quillon_Payroll", "paragraphs": [{
        "context": "Salaries at Quillon Corp are paid on the twenty-fifth of each month. "
                   "Bonuses are paid once a year in February, after the annual review.",
        "qas": [
            {"id": "p1", "question": "On which day are salaries paid at Quillon Corp?",
             "answers": [{"text": "the twenty-fifth of each month", "answer_start": 37}],
             "is_impossible": False},
            {"id": "p2", "question": "Which bank does Quillon Corp use for its payroll?",
             "answers": [], "is_impossible": True}]}]},
]}


class CountingClient:
    """Passes requests to the real client and counts them."""

    def __init__(self, inner):
        self.inner, self.reply_topic, self.count = inner, inner.reply_topic, 0
        self.credential = inner.credential

    async def arequest(self, request, timeout_s):
        self.count += 1
        return await self.inner.arequest(request, timeout_s)


@pytest.fixture(scope="module")
def evaluated(stack, workers, query_workers, tmp_path_factory):
    """Import + publish + index through the CLI, then one evaluation run through the CLI."""
    folder = tmp_path_factory.mktemp("evaluation")
    source, testset, reports = folder / "tiny-squad.json", folder / "tiny.jsonl", folder / "out"
    source.write_text(json.dumps(CORPUS))
    prefix = unique_prefix("eval-squad")
    imported = cli.invoke(app, ["eval", "import-squad", str(source), "--out", str(testset),
                                "--publish", "--doc-prefix", prefix, "--wait-timeout", "180"])
    assert imported.exit_code == 0, imported.output
    assert "indexed 3 document(s)" in imported.output
    ran = cli.invoke(app, ["eval", "run", "--testset", str(testset), "--doc-prefix", prefix,
                           "--out", str(reports), "--concurrency", "3", "--no-embed"])
    assert ran.exit_code == 0, ran.output
    run_id = re.search(r"run id: (\S+)", ran.output).group(1)
    return {"run_id": run_id, "testset": testset, "prefix": prefix, "reports": reports,
            "output": ran.output}


def test_the_run_is_stored_with_every_case_and_its_summary(stack, evaluated):
    data = load_run(stack.engine, evaluated["run_id"])
    assert data.run.status == "completed"
    assert data.run.cases_total == data.run.cases_done == 7
    assert {r.case_id for r in data.results} == {"z1", "z2", "z3", "g1", "g2", "p1", "p2"}
    assert all(r.status == "ok" for r in data.results), [r.error for r in data.results]
    assert all(not r.cached for r in data.results)
    config = data.run.config
    assert config["template_version"] == "default/v2" and config["backend"] == "local"
    assert config["model"] and config["temperature"] == 0.0
    metrics = data.summary["metrics"]
    assert metrics["hit@5"]["mean"] > 0.5 and metrics["hit@5"]["n"] == 7
    assert metrics["hit@1"]["mean"] >= 0.5  # distinct topics: the gold paragraph ranks first
    assert metrics["f1"]["n"] == 5 and metrics["abstention_correct"]["n"] == 2
    assert data.summary["counts"] == {**data.summary["counts"], "cases": 7, "errors": 0}
    answered = [r for r in data.results if r.expected == "answer" and not r.abstained]
    assert answered and all(r.cited_doc_ids and r.contexts for r in answered)
    assert "headline metrics" in evaluated["output"] and "hit@5" in evaluated["output"]


def test_reports_are_written(evaluated):
    folder = evaluated["reports"] / evaluated["run_id"]
    for name in ("report.md", "report.html", "report.json"):
        assert (folder / name).stat().st_size > 0, name
    report = json.loads((folder / "report.json").read_text())
    assert report["run_id"] == evaluated["run_id"] and len(report["cases"]) == 7


def test_resuming_a_complete_run_asks_nothing(stack, evaluated, reply_client):
    cases = read_jsonl(evaluated["testset"])
    config = build_run_config(evaluated["testset"], cases, doc_id_prefix=evaluated["prefix"])
    counting = CountingClient(reply_client)
    run_id = asyncio.run(run_eval(cases, config, counting, stack.engine,
                                  run_id=evaluated["run_id"], progress=False))
    assert run_id == evaluated["run_id"]
    assert counting.count == 0
    assert store.get_run(stack.engine, run_id).status == "completed"


def test_the_gate_catches_a_planted_regression(stack, evaluated, reply_client):
    cases = read_jsonl(evaluated["testset"])
    broken = build_run_config(evaluated["testset"], cases, domain="nocontext",
                              doc_id_prefix=evaluated["prefix"])
    candidate = asyncio.run(run_eval(cases, broken, reply_client, stack.engine,
                                     concurrency=3, progress=False))
    assert store.get_run(stack.engine, candidate).config["template_version"] == "nocontext/v1"
    baseline = evaluated["run_id"]

    failed = cli.invoke(app, ["eval", "gate", "--baseline", baseline, "--candidate", candidate])
    assert failed.exit_code == 1, failed.output
    assert "GATE FAILED" in failed.output
    assert "domain: 'default' → 'nocontext'" in failed.output

    same = cli.invoke(app, ["eval", "gate", "--baseline", baseline, "--candidate", baseline])
    assert same.exit_code == 0, same.output
    assert "GATE PASSED" in same.output

    compared = cli.invoke(app, ["eval", "compare", baseline, candidate])
    assert compared.exit_code == 0, compared.output
    assert "faithfulness" in compared.output and "7 common case(s)" in compared.output
    listed = cli.invoke(app, ["eval", "list"])
    assert listed.exit_code == 0 and baseline in listed.output and candidate in listed.output
    rewritten = cli.invoke(app, ["eval", "report", candidate, "--out",
                                 str(evaluated["reports"])])
    assert rewritten.exit_code == 0, rewritten.output
    assert (evaluated["reports"] / candidate / "report.html").exists()
