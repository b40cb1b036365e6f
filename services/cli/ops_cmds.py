"""`customllm doctor|replay`: check the platform's health, re-drive dead letters after a fix."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from services.cli.console import console
from services.cli.identity_scope import as_local_admin
from services.common.config import get_settings
from services.ops import doctor as doctor_checks
from services.ops import replay as replay_ops

STATUS_STYLE = {"ok": "[green]ok[/]", "info": "[cyan]info[/]", "warn": "[yellow]warn[/]",
                "fail": "[bold red]FAIL[/]", "skip": "[dim]skip[/]"}
LISTED_ROWS = 50


def doctor(
    deep: bool = typer.Option(False, "--deep",
                              help="Also load the embedding model and embed a sentence."),
    timeout: float = typer.Option(doctor_checks.DEFAULT_TIMEOUT_S, "--timeout", min=0.5,
                                  help="Seconds each network check may take."),
    lag_threshold: int = typer.Option(doctor_checks.DEFAULT_LAG_THRESHOLD, "--lag-threshold",
                                      min=0, help="Warn when a consumer group lags more."),
) -> None:
    """Check Kafka, Postgres/pgvector, migrations, topics, models, consumer lag and DLQs.

    Exits with 1 when any check fails (warnings do not fail).
    """
    as_local_admin()
    settings = get_settings()
    with console.status("Checking the platform..."):
        checks = doctor_checks.run_checks(settings, timeout_s=timeout, deep=deep,
                                          lag_threshold=lag_threshold)
    table = Table("check", "status", "detail", "hint", title="customllm doctor")
    for check in checks:
        table.add_row(escape(check.name), STATUS_STYLE[check.status], escape(check.detail),
                      escape(check.hint))
    console.print(table)
    counts = {status: sum(c.status == status for c in checks) for status in STATUS_STYLE}
    broken = doctor_checks.failed(checks)
    console.print(f"{counts['ok']} ok, {counts['info']} info, {counts['warn']} warning(s), "
                  f"{counts['fail']} failed, {counts['skip']} skipped")
    if broken:
        console.print("[bold red]broken:[/] " + ", ".join(escape(c.name) for c in broken))
        raise typer.Exit(1)


def replay(
    from_: str | None = typer.Option(None, "--from", metavar="DLQ_TOPIC",
                                     help="Re-drive this DLQ, e.g. docs.changes.dlq."),
    topic: str | None = typer.Option(None, "--topic",
                                     help="Instead: replay a time range of this source topic "
                                          "(docs.changes, chunks.embed, rag.requests) to itself."),
    error_type: list[str] = typer.Option([], "--error-type",
                                         help="Only DLQ records of this error type (repeatable)."),
    since: str | None = typer.Option(None, "--since", help="ISO 8601 start (no zone: UTC)."),
    until: str | None = typer.Option(None, "--until", help="ISO 8601 end, exclusive."),
    limit: int | None = typer.Option(None, "--limit", min=1,
                                     help="Replay at most this many messages."),
    dry_run: bool = typer.Option(False, "--dry-run",
                                 help="List what would be replayed; produce and record nothing."),
    rekey: bool = typer.Option(False, "--rekey-from-doc-id", "--rekey",
                               help="Key each replayed message by its payload's doc_id "
                                    "(request_id for rag.requests): the fix for key_mismatch."),
) -> None:
    """Re-drive dead-lettered messages after a fix, or replay a topic's time range.

    A DLQ replay records what it replayed in the consumer group customllm-replay-<dlq>, so the
    next replay continues after it; DLQ records themselves are never deleted.
    """
    as_local_admin()
    if (from_ is None) == (topic is None):
        raise typer.BadParameter("give exactly one of --from DLQ_TOPIC or --topic TOPIC")
    try:
        since_at = replay_ops.parse_time(since) if since else None
        until_at = replay_ops.parse_time(until) if until else None
    except replay_ops.ReplayError as exc:
        raise typer.BadParameter(str(exc)) from exc
    if topic is not None:
        if since_at is None:
            raise typer.BadParameter("--topic needs --since (and optionally --until)")
        if error_type or rekey:
            raise typer.BadParameter("--error-type and --rekey-from-doc-id apply to --from only")
    settings = get_settings()
    try:
        with _progress("dry run" if dry_run else "replaying") as (on_total, on_progress):
            if from_ is not None:
                summary = replay_ops.replay_dlq(
                    settings, from_, error_types=error_type, since=since_at, until=until_at,
                    limit=limit, dry_run=dry_run, rekey=rekey, on_total=on_total,
                    on_progress=on_progress)
            else:
                assert since_at is not None
                summary = replay_ops.replay_topic(
                    settings, topic or "", since=since_at, until=until_at, limit=limit,
                    dry_run=dry_run, on_total=on_total, on_progress=on_progress)
    except replay_ops.ReplayError as exc:
        console.print(f"[red]error:[/] {escape(str(exc))}")
        raise typer.Exit(1) from exc
    _print_summary(summary)


@contextmanager
def _progress(label: str) -> Iterator[tuple]:
    progress = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=console, transient=True)
    task = progress.add_task(label, total=None)
    with progress:
        yield (lambda total: progress.update(task, total=total),
               lambda n: progress.advance(task, n))


def _print_summary(summary: replay_ops.ReplaySummary) -> None:
    verb = "would replay" if summary.dry_run else "replayed"
    if summary.dry_run and summary.items:
        table = Table("partition", "offset", "error type", "action", "key", "to / reason",
                      title=f"{summary.source}: what a replay would do")
        for item in summary.items[:LISTED_ROWS]:
            table.add_row(str(item.partition), str(item.offset), item.error_type or "",
                          "[green]replay[/]" if item.action == "replay" else "[yellow]skip[/]",
                          escape(item.key or ""),
                          escape(item.target + (f" ({item.reason})" if item.reason else "")
                                 if item.action == "replay" else item.reason))
        console.print(table)
        hidden = len(summary.items) - LISTED_ROWS + summary.more_items
        if hidden > 0:
            console.print(f"... and {hidden} more")
    targets = ", ".join(f"{n} to {t}" for t, n in sorted(summary.targets.items()))
    console.print(f"{verb} {summary.replayed} message(s)" + (f" ({targets})" if targets else ""))
    skipped = sum(summary.skipped.values())
    if skipped:
        console.print(f"skipped {skipped}:")
        for reason, count in summary.skipped.most_common():
            console.print(f"  {count:>6}  {escape(reason)}")
    if summary.stopped:
        console.print(f"stopped: {summary.stopped}")
    if summary.passed_over:
        console.print(f"[yellow]{summary.passed_over} filtered record(s) were passed over to keep "
                      "the replay record small; replay them by resetting the group[/]")
    if summary.group and not summary.dry_run:
        where = ", ".join(f"p{p}→{o}" for p, o in sorted(summary.committed.items()))
        console.print(f"progress recorded in consumer group {summary.group}"
                      + (f" ({where})" if where else " (nothing new)"))
