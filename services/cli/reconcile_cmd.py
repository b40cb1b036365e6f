"""`customllm reconcile`: compare a folder (or a list of doc ids) with what is indexed, report
the drift, and fix it with `--apply` by publishing the needed events as the source's identity.

Doc ids, governance labels and content encoding are exactly those of `customllm publish`
(``build_change``), so a reconciled folder is indexed the same as a published one.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from services.cli.console import console
from services.cli.publish import _send, build_change, governance_for, iter_files
from services.common import metrics, telemetry
from services.common.config import Settings, get_settings
from services.common.db import make_engine
from services.common.events import DocChange
from services.common.source_publisher import SourceNotApproved, SourceProducers
from services.ingest.config import ingest_settings
from services.ingest.reconcile import Drift, compare, file_hash, load_indexed, record_drift

_COLUMNS = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn())


def _folder_source(folder: Path, id_prefix: str, defaults: dict
                   ) -> tuple[dict[str, str | None], dict[str, Path]]:
    """doc id → SHA-256 of the file, hashing with a progress bar (large trees take a while)."""
    files = list(iter_files([folder]))
    hashes: dict[str, str | None] = {}
    paths: dict[str, Path] = {}
    with Progress(*_COLUMNS, console=console, transient=True) as progress:
        task = progress.add_task("hashing files", total=len(files))
        for file, root in files:
            doc_id = governance_for(file, root, defaults).get("doc_id") or (
                id_prefix + file.relative_to(root).as_posix())
            hashes[doc_id] = file_hash(file)
            paths[doc_id] = file
            progress.advance(task)
    return hashes, paths


def _id_list(path: Path) -> dict[str, str | None]:
    """One doc id per line; an optional second column (tab or space) is its content hash."""
    out: dict[str, str | None] = {}
    for line in path.read_text().splitlines():
        parts = line.strip().split()
        if parts and not parts[0].startswith("#"):
            out[parts[0]] = parts[1] if len(parts) > 1 else None
    return out


def report_drift(drift: Drift, scope: str) -> None:
    table = Table("drift", "documents", title=f"reconcile {scope}")
    for kind, count in drift.counts().items():
        table.add_row(kind, str(count))
    console.print(table)
    console.print(f"drift: {drift.drifted} of {drift.total} document(s), "
                  f"{drift.percent:.1f}%")
    for doc_id, reason in sorted(drift.reasons.items())[:20]:
        console.print(f"  [red]failed[/] {doc_id}: {reason[:160]}")


def reconcile(
    folder: Path | None = typer.Argument(None, help="Folder that is the source of truth."),
    doc_ids: Path | None = typer.Option(None, help="File of doc ids (optionally 'id hash' per "
                                        "line) instead of a folder."),
    source: str | None = typer.Option(None, help="Source name (default: the folder's "
                                      ".customllm.yaml); also scopes orphan detection."),
    id_prefix: str = typer.Option("", help="Doc id prefix used when the folder was published."),
    apply: bool = typer.Option(False, "--apply", help="Publish the events that fix the drift."),
    as_json: bool = typer.Option(False, "--json", help="Print the drift as JSON."),
    ref_root: Path | None = typer.Option(None, help="As for publish: files under it go by "
                                         "reference."),
) -> None:
    """Report missing / stale / orphaned / failed documents, and fix them with --apply."""
    if (folder is None) == (doc_ids is None):
        raise typer.BadParameter("give a FOLDER or --doc-ids, not both")
    settings = get_settings()
    telemetry.setup_tracing("customllm-cli", settings)
    metrics.setup_metrics("customllm-cli", settings)
    defaults = {"source": source}
    paths: dict[str, Path] = {}
    if folder is not None:
        if not folder.is_dir():
            raise typer.BadParameter(f"{folder} is not a folder")
        source = source or governance_for(folder / "_", folder, {}).get("source")
        defaults["source"] = source
        wanted, paths = _folder_source(folder, id_prefix, defaults)
    else:
        assert doc_ids is not None
        wanted = _id_list(doc_ids)
    if not id_prefix and not source:
        console.print("[yellow]no --id-prefix and no source: orphaned documents are not "
                      "looked for (the whole index would count)[/]")
    engine = make_engine(settings.sqlalchemy_url, pool_size=1)
    indexed = load_indexed(engine, id_prefix=id_prefix, source=source, doc_ids=wanted)
    if not id_prefix and not source:
        indexed = {k: v for k, v in indexed.items() if k in wanted}
    drift = compare(wanted, indexed)
    scope = source or id_prefix or (str(folder) if folder else "doc-ids")
    record_drift(drift, scope)
    if as_json:
        console.print_json(json.dumps({"scope": scope, **drift.to_dict()}))
    else:
        report_drift(drift, scope)
    if apply and drift.drifted:
        _apply(drift, paths, folder, defaults, id_prefix, source, ref_root, settings)
    _shutdown_metrics()
    telemetry.shutdown_tracing()


def _apply(drift: Drift, paths: dict[str, Path], folder: Path | None, defaults: dict,
           id_prefix: str, source: str | None, ref_root: Path | None,
           settings: Settings) -> None:
    """Upserts for missing, stale and failed files; deletes for orphans. Versions are now in
    µs like publish's, so they are newer than anything indexed from this source."""
    producers = SourceProducers(settings)
    tracer = telemetry.tracer(__name__)
    version = time.time_ns() // 1000
    errors: list[str] = []
    upserts = [d for d in (*drift.missing, *drift.stale, *drift.failed) if d in paths]
    unfixable = [d for d in (*drift.missing, *drift.stale, *drift.failed) if d not in paths]
    sent = 0
    with Progress(*_COLUMNS, console=console) as progress:
        task = progress.add_task("publishing fixes", total=len(upserts) + len(drift.orphaned))
        for doc_id in upserts:
            try:
                assert folder is not None  # only a folder gives files to publish
                change = build_change(paths[doc_id], folder, defaults, id_prefix, version,
                                      ref_root, ingest_settings().max_document_bytes)
                _send(tracer, producers.for_source(change.source), change, errors)
                sent += 1
            except (ValueError, UnicodeDecodeError, SourceNotApproved) as exc:
                console.print(f"[yellow]skipped[/] {doc_id}: {exc}")
            progress.advance(task)
        for doc_id in drift.orphaned:
            try:
                _send(tracer, producers.for_source(source),
                      DocChange(doc_id=doc_id, version=version, op="delete", source=source),
                      errors)
                sent += 1
            except SourceNotApproved as exc:
                console.print(f"[red]cannot delete[/] {doc_id}: {exc}")
            progress.advance(task)
        producers.flush(errors)
    for error in errors:
        console.print(f"[red]delivery failed:[/] {error}")
    if unfixable:
        console.print(f"[yellow]{len(unfixable)} document(s) have no file to publish from "
                      "(doc-id list): publish them from their source[/]")
    console.print(f"published {sent} fix event(s)")


def _shutdown_metrics() -> None:
    """A CLI run is short: flush the drift gauges before the process exits."""
    from opentelemetry import metrics as otel_metrics

    shutdown = getattr(otel_metrics.get_meter_provider(), "shutdown", None)
    if shutdown is not None:
        shutdown()
