"""`customllm eval ...`: test sets, evaluation runs, reports, comparisons and the regression gate.

    customllm eval import-squad squad.json --out squad.jsonl --publish
    customllm eval run --testset squad.jsonl --limit 120
    customllm eval gate --baseline RUN_A --candidate RUN_B
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from sqlalchemy.engine import Engine

from services.cli.console import console
from services.cli.db import database, fail
from services.common import identity
from services.common.config import get_settings
from services.common.evaluation import config as eval_config
from services.common.evaluation import store, testsets
from services.common.evaluation.runs import build_run_config, comparability, load_run
from services.common.source_publisher import SourceNotApproved

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Evaluation harness: test sets, runs, reports, regression gate.")


def _database(error_code: int = 1) -> AbstractContextManager[Engine]:
    """An engine for one command, its errors turned into clear messages and exit codes."""
    return database(("eval_",), "evaluation", error_code)


# --- test sets ---------------------------------------------------------------------------------

@app.command("import-squad")
def import_squad(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="SQuAD JSON file."),
    out: Path = typer.Option(..., "--out", help="Test set to write (JSONL)."),
    publish: bool = typer.Option(False, "--publish",
                                 help="Also index the paragraphs and wait until they are."),
    limit: int | None = typer.Option(None, min=1,
                                     help="Keep the first N questions (and their paragraphs)."),
    doc_prefix: str = typer.Option("squad/", help="Prefix of the paragraphs' doc ids."),
    wait_timeout: float = typer.Option(900.0, help="Seconds to wait for indexing."),
) -> None:
    """SQuAD → test set (one case per question); --publish indexes the paragraphs."""
    try:
        cases, documents = testsets.import_squad(file, doc_prefix=doc_prefix, limit=limit)
    except testsets.TestSetError as exc:
        raise fail(str(exc)) from exc
    digest = testsets.write_jsonl(cases, out)
    refuse = sum(c.expected == "refuse" for c in cases)
    console.print(f"wrote {len(cases)} case(s) to {out} ({len(cases) - refuse} answerable, "
                  f"{refuse} unanswerable) from {len(documents)} paragraph(s); "
                  f"test set {digest[:12]}")
    if publish:
        _publish_and_wait(documents, wait_timeout)


@app.command("import-prompts")
def import_prompts(
    file: Path = typer.Argument(..., exists=True, dir_okay=False,
                                help='JSONL of {"text", "label"} (1 = injection).'),
    out: Path = typer.Option(..., "--out", help="Test set to write (JSONL)."),
) -> None:
    """Labelled prompts → test set: injections must be refused, benign prompts answered."""
    try:
        cases = testsets.import_prompts(file)
    except testsets.TestSetError as exc:
        raise fail(str(exc)) from exc
    digest = testsets.write_jsonl(cases, out)
    injections = sum(c.expected == "refuse" for c in cases)
    console.print(f"wrote {len(cases)} case(s) to {out} ({injections} injection(s), "
                  f"{len(cases) - injections} benign); test set {digest[:12]}")


def _publish_and_wait(documents: list[Any], timeout_s: float) -> None:
    from services.common.evaluation.corpus import indexing_state, publish_documents

    settings = get_settings()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    expected = {d.doc_id: d.version for d in documents}
    with _database() as engine, Progress(*columns, console=console) as progress:
        sending = progress.add_task("publishing", total=len(documents))
        try:
            publish_documents(settings.kafka_bootstrap, documents,
                              lambda: progress.advance(sending))
        except SourceNotApproved as exc:
            raise fail(str(exc)) from exc
        indexing = progress.add_task("indexing", total=len(documents))
        deadline = time.monotonic() + timeout_s
        while True:
            state = indexing_state(engine, expected)
            progress.update(indexing, completed=len(state.indexed) + len(state.failed))
            if not state.pending:
                break
            if time.monotonic() > deadline:
                raise fail(f"{len(state.pending)} document(s) not indexed after "
                            f"{timeout_s:.0f}s (are the ingest and embedder workers "
                            "running? see `customllm status` and docs.changes.dlq)")
            time.sleep(1.0)
    if state.failed:
        for doc_id, error in sorted(state.failed.items())[:10]:
            console.print(f"[red]failed[/] {doc_id}: {error}")
        raise fail(f"{len(state.failed)} document(s) failed to index")
    console.print(f"indexed {len(state.indexed)} document(s)")


# --- runs --------------------------------------------------------------------------------------

@app.command("run")
def run(
    testset: Path = typer.Option(..., "--testset", exists=True, dir_okay=False,
                                 help="Test set (JSONL of cases)."),
    limit: int | None = typer.Option(
        None, min=1, help="Evaluate a deterministic stratified sample of N cases."),
    concurrency: int = typer.Option(eval_config.DEFAULT_CONCURRENCY, min=1,
                                    help="Cases in flight at once."),
    adapter: str | None = typer.Option(None, help="LoRA adapter to evaluate."),
    domain: str = typer.Option("default", help="Prompt template domain."),
    top_k: int | None = typer.Option(None, min=1, help="Chunks retrieved for answering "
                                     "(default: the rag worker's)."),
    max_tokens: int | None = typer.Option(None, min=1, help="Answer length limit "
                                          "(default: the rag worker's)."),
    doc_prefix: str | None = typer.Option(None, help="Only retrieve doc ids starting with this."),
    run_id: str | None = typer.Option(None, "--run-id", help="Resume this run (or name a new "
                                      "one)."),
    out: Path | None = typer.Option(None, "--out", help="Reports go to OUT/<run id>/ "
                                    "(default: <state dir>/eval-reports)."),
    api_key: str | None = typer.Option(None, "--api-key", envvar="CUSTOMLLM_API_KEY",
                                       help="Ask as this key's principal (default: the local "
                                       "operator key)."),
    timeout: float = typer.Option(eval_config.DEFAULT_TIMEOUT_S,
                                  help="Seconds to wait for each reply."),
    seed: int = typer.Option(0, help="Seed of the bootstrap intervals."),
    n_boot: int = typer.Option(eval_config.DEFAULT_N_BOOT, min=1, help="Bootstrap resamples."),
    embed: bool = typer.Option(True, help="Use the embedding model for faithfulness."),
) -> None:
    """Evaluate a test set against the running stack; print headline metrics, write reports."""
    from services.common.embeddings import embedder_from_settings
    from services.common.evaluation.runner import run_eval
    from services.common.prompting.prompts import TemplateError, load_template
    from services.common.rpc import ReplyClient

    try:
        all_cases = testsets.read_jsonl(testset)
        load_template(domain)
    except (testsets.TestSetError, TemplateError) as exc:
        raise fail(str(exc)) from exc
    cases = testsets.sample(all_cases, limit)
    config = build_run_config(testset, all_cases, limit=limit, domain=domain, adapter=adapter,
                              top_k=top_k, max_tokens=max_tokens, doc_id_prefix=doc_prefix,
                              seed=seed)
    settings = get_settings()
    credential = api_key or identity.own_credential(settings)
    if credential is None:
        raise fail("no API key: pass --api-key, set CUSTOMLLM_API_KEY, or run `customllm up`")
    who = eval_config.principal_for_credential(settings, credential)
    console.print(f"evaluating {len(cases)} of {len(all_cases)} case(s) from {testset} "
                  f"(test set {config.testset_hash[:12]}), domain {domain}"
                  + (f", adapter {adapter}" if adapter else ""))
    encode = None
    if embed:
        embedder = embedder_from_settings(settings)
        with console.status("loading the embedding model..."):
            embedder.warm_up()
        encode = embedder.encode
    with _database() as engine:  # EvalRunError is a CustomLLMError: a clear message, exit 1
        client = ReplyClient(settings.kafka_bootstrap, client_id="customllm-eval",
                             credential=credential)
        try:
            run_id = asyncio.run(run_eval(cases, config, client, engine, principal=who,
                                          concurrency=concurrency, run_id=run_id,
                                          progress=True, embed=encode, timeout_s=timeout,
                                          n_boot=n_boot, console=console))
        finally:
            client.close()
        data = load_run(engine, run_id)
        paths = _write_reports(engine, run_id, out)
    console.print(f"run id: [bold]{run_id}[/]")
    _print_headline(data.summary)
    for kind, path in paths.items():
        console.print(f"{kind} report: {path}")


def _write_reports(engine: Engine, run_id: str, out: Path | None) -> dict[str, Path]:
    from services.common.evaluation.runs import write_run_reports

    return write_run_reports(engine, run_id, out or eval_config.reports_dir(get_settings()))


def _fmt(value: Any, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _print_headline(summary: dict[str, Any]) -> None:
    from services.common.evaluation.summary import HEADLINE_METRICS

    metrics = summary.get("metrics") or {}
    table = Table("metric", "mean", "95% CI", "n", title="headline metrics")
    for name in (*HEADLINE_METRICS, "hit@1", "mrr", "citation_precision", "false_abstention",
                 "error"):
        entry = metrics.get(name) or {}
        ci = ("–" if entry.get("lo") is None
              else f"[{_fmt(entry.get('lo'))}, {_fmt(entry.get('hi'))}]")
        table.add_row(name, _fmt(entry.get("mean")), ci, str(entry.get("n", 0)))
    console.print(table)
    counts = summary.get("counts") or {}
    latency = (summary.get("latency") or {}).get("total") or {}
    tokens = (summary.get("tokens") or {}).get("total_tokens") or {}
    console.print(f"{counts.get('cases', 0)} case(s), {counts.get('errors', 0)} error(s), "
                  f"{counts.get('abstained', 0)} abstained; latency p50 "
                  f"{_fmt(latency.get('p50'), 0)} ms, p95 {_fmt(latency.get('p95'), 0)} ms; "
                  f"{tokens.get('total', 0)} tokens; cost ${summary.get('cost_usd') or 0:.4f}")


@app.command("report")
def report(
    run_id: str = typer.Argument(..., help="Run id."),
    out: Path | None = typer.Option(None, "--out", help="Reports go to OUT/<run id>/ "
                                    "(default: <state dir>/eval-reports)."),
) -> None:
    """(Re)write a stored run's reports (Markdown, HTML, JSON)."""
    with _database() as engine:
        data = load_run(engine, run_id)
        paths = _write_reports(engine, run_id, out)
    if data.run.status != "completed":
        console.print(f"[yellow]note:[/] run {run_id} is {data.run.status}; the report covers "
                      f"the {len(data.results)} of {data.run.cases_total} case(s) stored")
    _print_headline(data.summary)
    for kind, path in paths.items():
        console.print(f"{kind} report: {path}")


@app.command("list")
def list_runs(limit: int = typer.Option(30, min=1, help="At most this many runs.")) -> None:
    """Evaluation runs, newest first."""
    with _database() as engine:
        runs = store.list_runs(engine, limit)
    table = Table("run id", "status", "test set", "cases", "errors", "domain", "adapter",
                  "template", "f1", "hit@5", "started")
    for r in runs:
        metrics = (r.summary or {}).get("metrics") or {}
        table.add_row(
            r.run_id, r.status, f"{Path(r.testset).name} ({r.testset_hash[:8]})",
            f"{r.cases_done}/{r.cases_total}", str(r.cases_failed),
            str(r.config.get("domain") or "-"), str(r.config.get("adapter") or "-"),
            str(r.config.get("template_version") or "-"),
            _fmt((metrics.get("f1") or {}).get("mean")),
            _fmt((metrics.get("hit@5") or {}).get("mean")),
            r.started_at.strftime("%Y-%m-%d %H:%M"))
    console.print(table)
    if not runs:
        console.print("no evaluation runs yet: `customllm eval run --testset FILE`")


# --- comparing and gating ----------------------------------------------------------------------

def _deltas(engine: Engine, baseline: str, candidate: str, n_boot: int, seed: int,
            also: Sequence[str] = ()) -> tuple[list[Any], list[str], list[str], int]:
    """``also``: metrics named by the gate's tolerances, compared even when not in the
    default set, so a tolerance is never silently left unchecked."""
    from services.common.evaluation.compare import COMPARE_METRICS, compare

    a, b = load_run(engine, baseline), load_run(engine, candidate)
    problems, differences = comparability(a.run, b.run)
    common = len(set(a.by_case()) & set(b.by_case()))
    metrics = [*COMPARE_METRICS, *(m for m in also if m not in COMPARE_METRICS)]
    return (compare(a.by_case(), b.by_case(), metrics=metrics, n_boot=n_boot, seed=seed),
            problems, differences, common)


def _delta_table(deltas: list[Any], title: str, failed: set[str] | None = None) -> Table:
    table = Table("metric", "baseline", "candidate", "delta", "95% CI", "n", "", title=title)
    for d in deltas:
        if d.delta is None:
            verdict = "[dim]n/a[/]"
        elif d.hi is not None and d.lo is not None and (d.lo > 0 or d.hi < 0):
            better = (d.delta > 0) == d.higher_is_better
            verdict = "[green]better[/]" if better else "[red]worse[/]"
        else:
            verdict = "[dim]no significant change[/]"
        if failed and d.name in failed:
            verdict += " [red bold]FAIL[/]"
        digits = 0 if d.name.endswith("_ms") else 3
        label = d.name + (" (p50)" if getattr(d, "statistic", "mean") == "median" else "")
        ci = "–" if d.lo is None else f"[{d.lo:+.{digits}f}, {d.hi:+.{digits}f}]"
        delta = "–" if d.delta is None else f"{d.delta:+.{digits}f}"
        table.add_row(label, _fmt(d.a_mean, digits), _fmt(d.b_mean, digits), delta, ci,
                      str(d.n), verdict)
    return table


@app.command("compare")
def compare_cmd(
    run_a: str = typer.Argument(..., help="Baseline run id."),
    run_b: str = typer.Argument(..., help="Candidate run id."),
    n_boot: int = typer.Option(eval_config.DEFAULT_N_BOOT, min=1, help="Bootstrap resamples."),
    seed: int = typer.Option(0, help="Bootstrap seed."),
) -> None:
    """Per-metric deltas (candidate - baseline) with paired 95% bootstrap intervals."""
    with _database() as engine:
        deltas, problems, differences, common = _deltas(engine, run_a, run_b, n_boot, seed)
    for problem in problems:
        console.print(f"[yellow]warning:[/] {problem}")
    if differences:
        console.print("compared: " + "; ".join(differences))
    console.print(_delta_table(deltas, f"{run_a} → {run_b} ({common} common case(s))"))


@app.command("gate")
def gate_cmd(
    baseline: str = typer.Option(..., "--baseline", help="Baseline run id."),
    candidate: str = typer.Option(..., "--candidate", help="Candidate run id."),
    tolerances: Path | None = typer.Option(None, "--tolerances", exists=True, dir_okay=False,
                                           help="YAML: metric → tolerance (merged over the "
                                           "defaults)."),
    allow_different_testsets: bool = typer.Option(
        False, help="Gate even when the runs measured different test sets."),
    n_boot: int = typer.Option(eval_config.DEFAULT_N_BOOT, min=1, help="Bootstrap resamples."),
    seed: int = typer.Option(0, help="Bootstrap seed."),
) -> None:
    """Fail (exit code 1) when the candidate regresses beyond tolerance, significantly."""
    from services.common.evaluation.compare import DEFAULT_TOLERANCES, gate

    try:
        limits = (eval_config.load_tolerances(tolerances) if tolerances is not None
                  else dict(DEFAULT_TOLERANCES))
    except eval_config.EvalConfigError as exc:
        raise fail(str(exc), 2) from exc
    with _database(2) as engine:
        deltas, problems, differences, common = _deltas(engine, baseline, candidate, n_boot,
                                                        seed, also=list(limits))
    different_sets = any(p.startswith("different test sets") for p in problems)
    if different_sets and not allow_different_testsets:
        raise fail(f"{problems[0]}; the gate compares runs of the same test set "
                    "(--allow-different-testsets to compare the common cases anyway)", 2)
    for problem in problems:
        console.print(f"[yellow]warning:[/] {problem}")
    if differences:
        console.print("compared: " + "; ".join(differences))
    verdict = gate(deltas, limits)
    failed = {f.split(":", 1)[0] for f in verdict.failures}
    console.print(_delta_table([d for d in deltas if d.name in limits],
                               f"gate {baseline} → {candidate} ({common} common case(s))",
                               failed))
    for skipped in verdict.skipped:
        console.print(f"[dim]skipped {skipped}[/]")
    if not verdict.passed:
        console.print(f"[red bold]GATE FAILED[/]: {len(verdict.failures)} regression(s)")
        for failure in verdict.failures:
            console.print(f"  [red]✗[/] {failure}")
        raise typer.Exit(1)
    console.print(f"[green bold]GATE PASSED[/]: {len(verdict.checked)} metric(s) checked "
                  f"({', '.join(verdict.checked)})")

