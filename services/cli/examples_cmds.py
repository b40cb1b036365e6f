"""`customllm examples ...`: the supervision set (import, review, snapshot, data card).

    customllm examples import faq.jsonl --source support-faq --license CC-BY-4.0
    customllm examples from-eval RUN_ID --min-f1 0.8
    customllm examples review --reviewer alice          # interactive
    customllm examples approve 3f2a9c1b 77d0e2aa --reviewer alice
    customllm examples snapshot --source support-faq --max-privacy internal
    customllm examples card SNAPSHOT_ID
"""

from __future__ import annotations

import getpass
import json
from contextlib import AbstractContextManager
from pathlib import Path

import typer
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.prompt import Prompt
from rich.table import Table
from sqlalchemy.engine import Engine

from services.cli.console import console
from services.cli.db import database, fail
from services.common.config import get_settings
from services.finetune import supervision
from services.finetune.examples import LineError, ParsedLine, parse_lines

app = typer.Typer(no_args_is_help=True,
                  help="The supervision set: import, review, snapshot, data card.")

PRIVACY_HELP = "public | internal | confidential | restricted"
BATCH = 200  # lines per import transaction: progress stays live, a crash loses one batch




def _database(error_code: int = 1) -> AbstractContextManager[Engine]:
    return database(('sft_',), "supervision", error_code)


def _reviewer(given: str | None) -> str:
    if given:
        return given
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name in a bare container
        raise fail("no reviewer name: pass --reviewer") from None


# --- import ---------------------------------------------------------------------------------

@app.command("import")
def import_cmd(
    file: Path = typer.Argument(..., exists=True, dir_okay=False,
                                help="JSONL: {instruction, input, output} or {messages: [...]}."),
    source: str | None = typer.Option(None, help="Source name (default: the file's stem)."),
    license: str | None = typer.Option(None, "--license", help="Licence of the examples."),  # noqa: A002
    privacy_class: str = typer.Option("internal", help=PRIVACY_HELP),
    tag: list[str] = typer.Option([], "--tag", help="Tag every example (repeatable)."),
    approve: bool = typer.Option(False, "--approve",
                                 help="Approve on import (you vouch for the whole file)."),
    reviewer: str | None = typer.Option(None, help="Reviewer name for --approve (default: $USER)."),
    strict: bool = typer.Option(False, "--strict", help="Import nothing if any line is bad."),
) -> None:
    """Import examples; re-importing the same file adds nothing (ids are content hashes)."""
    if privacy_class not in supervision.PRIVACY_ORDER:
        raise fail(f"unknown privacy class {privacy_class!r}; expected {PRIVACY_HELP}")
    approved_by = _reviewer(reviewer) if approve else None
    lines = file.read_text(encoding="utf-8").splitlines()
    parsed = list(parse_lines(lines))
    errors = [p for p in parsed if isinstance(p, LineError)]
    good = [p for p in parsed if isinstance(p, ParsedLine)]
    for error in errors[:20]:
        console.print(f"[yellow]{file}:{error.line}:[/] {error.error}")
    if len(errors) > 20:
        console.print(f"[yellow]... and {len(errors) - 20} more bad line(s)[/]")
    if errors and strict:
        raise fail(f"{len(errors)} bad line(s); nothing imported (--strict)")
    added = existing = 0
    with _database() as engine, Progress(
            TextColumn("importing"), BarColumn(), MofNCompleteColumn(),
            console=console, transient=True) as progress:
        task = progress.add_task("import", total=len(good))
        for start in range(0, len(good), BATCH):
            chunk = good[start:start + BATCH]
            report = supervision.import_examples(
                engine, chunk, source=source or file.stem, license=license,
                privacy_class=privacy_class, tags=tag, approved_by=approved_by,
                note="approved on import" if approve else None, file=str(file.resolve()))
            added += len(report.added)
            existing += len(report.existing)
            progress.advance(task, len(chunk))
    status = f"approved by {approved_by}" if approved_by else "pending review"
    console.print(f"{added} added ({status}), {existing} already present, "
                  f"{len(errors)} bad line(s) skipped")
    if errors and not good:
        raise typer.Exit(1)


@app.command("from-eval")
def from_eval(
    run_id: str = typer.Argument(..., help="Evaluation run whose good answers to propose."),
    min_f1: float = typer.Option(0.8, min=0.0, max=1.0,
                                 help="Minimum token F1 against the references."),
    source: str = typer.Option("system", help="Source name of the imported pairs."),
    privacy_class: str = typer.Option("internal", help=PRIVACY_HELP),
    license: str | None = typer.Option(None, "--license", help="Licence of the pairs."),  # noqa: A002
    domain: str = typer.Option("default", help="Prompt template domain the pairs are rendered "
                               "with."),
) -> None:
    """Propose the system's well-scored answers from an evaluation run (as pending)."""
    from services.common.evaluation import store
    from services.common.prompting.prompts import load_template
    from services.finetune.system_pairs import candidates

    template = load_template(domain)
    with _database() as engine:
        run = store.require_run(engine, run_id)
        stored = store.load_results(engine, run.run_id)
        good, skipped = candidates(((s.result, s.metrics) for s in stored), template,
                                   min_f1=min_f1, run_id=run.run_id,
                                   testset_hash=run.testset_hash)
        added = 0
        for candidate in good:
            added += supervision.add_example(
                engine, candidate.example, source=source, lineage=candidate.lineage,
                license=license, privacy_class=supervision.check_privacy(privacy_class),
                tags=[f"eval:{run.run_id}"])
    reasons: dict[str, int] = {}
    for item in skipped:
        key = item.reason.split(" below ")[0] if "below" in item.reason else item.reason
        reasons[key] = reasons.get(key, 0) + 1
    console.print(f"{len(stored)} result(s): {len(good)} candidate(s), {added} new (pending "
                  f"review); skipped: {reasons or 'none'}")


# --- listing and review ---------------------------------------------------------------------

@app.command("list")
def list_cmd(
    status: str | None = typer.Option(None, help="pending | approved | rejected"),
    source: str | None = typer.Option(None, help="Only this source."),
    limit: int = typer.Option(50, min=1, help="Rows to show."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line."),
) -> None:
    """Examples, oldest first, with their review status."""
    with _database() as engine:
        rows = supervision.list_examples(engine, status=status, source=source, limit=limit)
        counts = supervision.counts(engine)
    if as_json:
        for row in rows:  # plain lines, for jq and scripts (no rich wrapping)
            typer.echo(json.dumps({
                "example_id": row.example_id, "review_status": row.review_status,
                "source": row.source, "privacy_class": row.privacy_class,
                "license": row.license, "tags": row.tags, "reviewer": row.reviewer,
                "messages": row.messages, "lineage": row.lineage}, default=str))
        return
    table = Table(title=f"examples ({', '.join(f'{k} {v}' for k, v in counts.items())})")
    for column in ("id", "status", "source", "privacy", "question", "answer", "reviewer"):
        table.add_column(column, overflow="fold")
    for row in rows:
        question = next((m["content"] for m in reversed(row.messages[:-1])
                         if m["role"] == "user"), "")
        table.add_row(row.example_id[:12], row.review_status, row.source, row.privacy_class,
                      _tail(question, 60), _tail(row.messages[-1]["content"], 60),
                      row.reviewer or "")
    console.print(table)


def _tail(text: str, n: int) -> str:
    """The end of a text (a RAG prompt's question is at its end), on one line."""
    flat = " ".join(text.split())
    return flat if len(flat) <= n else "…" + flat[-(n - 1):]


@app.command("show")
def show(example_id: str = typer.Argument(..., help="Id or unique prefix.")) -> None:
    """One example in full, with its lineage and review."""
    with _database() as engine:
        row = supervision.get_example(engine, example_id)
    _print_example(row)


def _print_example(row: supervision.StoredExample) -> None:
    for message in row.messages:
        style = {"system": "dim", "user": "cyan", "assistant": "green"}[message["role"]]
        console.print(Panel(message["content"], title=message["role"], border_style=style,
                            title_align="left"))
    console.print(f"id {row.example_id}  status [bold]{row.review_status}[/]  source "
                  f"{row.source}  privacy {row.privacy_class}  licence {row.license or '-'}  "
                  f"tags {row.tags}  lineage {json.dumps(row.lineage, default=str)}")


@app.command("approve")
def approve(
    example_ids: list[str] = typer.Argument(..., help="Ids or unique prefixes."),
    reviewer: str | None = typer.Option(None, help="Your name (default: $USER)."),
    note: str | None = typer.Option(None, help="Why (kept with the review)."),
) -> None:
    """Approve examples for training."""
    with _database() as engine:
        done = supervision.review(engine, example_ids, "approved", _reviewer(reviewer), note)
    console.print(f"approved {len(done)} example(s)")


@app.command("reject")
def reject(
    example_ids: list[str] = typer.Argument(..., help="Ids or unique prefixes."),
    note: str = typer.Option(..., help="Why it is rejected (required)."),
    reviewer: str | None = typer.Option(None, help="Your name (default: $USER)."),
) -> None:
    """Reject examples (they never train)."""
    with _database() as engine:
        done = supervision.review(engine, example_ids, "rejected", _reviewer(reviewer), note)
    console.print(f"rejected {len(done)} example(s)")


@app.command("reopen")
def reopen(example_ids: list[str] = typer.Argument(..., help="Ids or unique prefixes.")) -> None:
    """Put examples back to pending for another review."""
    with _database() as engine:
        done = supervision.review(engine, example_ids, "pending", None, None)
    console.print(f"reopened {len(done)} example(s)")


@app.command("review")
def review(
    reviewer: str | None = typer.Option(None, help="Your name (default: $USER)."),
    source: str | None = typer.Option(None, help="Only this source."),
    limit: int = typer.Option(100, min=1, help="Examples to go through at most."),
) -> None:
    """Go through pending examples: approve (a), reject (r, with a note), skip (s), quit (q)."""
    name = _reviewer(reviewer)
    tally = {"approved": 0, "rejected": 0, "skipped": 0}
    with _database() as engine:
        pending = supervision.list_examples(engine, status="pending", source=source, limit=limit)
        if not pending:
            console.print("nothing to review")
            return
        for index, row in enumerate(pending, start=1):
            console.rule(f"{index}/{len(pending)}")
            _print_example(row)
            choice = Prompt.ask("approve / reject / skip / quit", choices=["a", "r", "s", "q"],
                                default="s", console=console)
            if choice == "q":
                break
            if choice == "s":
                tally["skipped"] += 1
                continue
            if choice == "a":
                supervision.review(engine, [row.example_id], "approved", name, None)
                tally["approved"] += 1
            else:
                note = Prompt.ask("reason", console=console) or None
                supervision.review(engine, [row.example_id], "rejected", name, note)
                tally["rejected"] += 1
    console.print(", ".join(f"{v} {k}" for k, v in tally.items()))


# --- snapshots ------------------------------------------------------------------------------

@app.command("snapshot")
def snapshot(
    source: list[str] = typer.Option([], "--source", help="Only these sources (repeatable)."),
    tag: list[str] = typer.Option([], "--tag", help="Examples with any of these tags."),
    max_privacy: str | None = typer.Option(None, help=f"Highest privacy class: {PRIVACY_HELP}"),
    out: Path | None = typer.Option(None, help="Folder for the card and examples (default: "
                                    "<state>/finetune/snapshots/<id>)."),
) -> None:
    """Freeze the approved examples (PII-scrubbed) into a snapshot with its data card."""
    with _database() as engine, console.status("scrubbing PII and freezing the snapshot…"):
        snap = supervision.create_snapshot(engine, sources=source, tags=tag,
                                           max_privacy=max_privacy)
        _, examples = supervision.load_snapshot(engine, snap.snapshot_id)
    folder = out or get_settings().state_path / "finetune" / "snapshots" / snap.snapshot_id
    _write_snapshot(folder, snap, examples)
    console.print(f"snapshot {snap.snapshot_id}: {snap.n_examples} example(s)")
    console.print(f"data card: {folder / 'card.md'}")


def _write_snapshot(folder: Path, snap: supervision.Snapshot, examples: list) -> None:
    from services.finetune.examples import write_jsonl

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "card.md").write_text(snap.card_markdown, encoding="utf-8")
    (folder / "card.json").write_text(json.dumps(snap.card, indent=2), encoding="utf-8")
    write_jsonl(folder / "examples.jsonl", examples)


@app.command("card")
def card(
    snapshot_id: str = typer.Argument(..., help="Snapshot id or unique prefix."),
    as_json: bool = typer.Option(False, "--json", help="The card as JSON."),
) -> None:
    """A snapshot's data card."""
    with _database() as engine:
        snap = supervision.get_snapshot(engine, snapshot_id)
    if as_json:
        typer.echo(json.dumps(snap.card, indent=2))
    else:
        console.print(snap.card_markdown, markup=False, highlight=False)


@app.command("snapshots")
def snapshots(limit: int = typer.Option(20, min=1)) -> None:
    """Recent snapshots."""
    with _database() as engine:
        rows = supervision.list_snapshots(engine, limit)
    table = Table(title="snapshots")
    for column in ("snapshot id", "examples", "filter", "created"):
        table.add_column(column)
    for sid, n, flt, created in rows:
        table.add_row(sid, str(n), json.dumps(flt), created.isoformat(timespec="seconds"))
    console.print(table)
