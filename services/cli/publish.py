"""`customllm publish`: files and folders → document change events on ``docs.changes``.

Governance fields come from flags, overridden per folder by ``.customllm.yaml`` and per file by
``<file>.meta.yaml`` sidecars, so a data steward can label a tree once and publish it repeatedly.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer
import yaml
from opentelemetry.trace import SpanKind
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from services.cli.console import console
from services.common import telemetry
from services.common.config import get_settings
from services.common.events import DocChange
from services.common.producer import send
from services.common.source_publisher import SourceNotApproved, SourceProducers
from services.common.topics import DOCS_CHANGES
from services.ingest.config import ingest_settings

CONTENT_TYPES = {".txt": "text/plain", ".text": "text/plain", ".md": "text/markdown",
                 ".markdown": "text/markdown", ".html": "text/html", ".htm": "text/html",
                 ".pdf": "application/pdf",
                 ".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document"}
BINARY_SUFFIXES = {".pdf", ".docx"}
# JSON framing and governance fields around the base64 body of a binary document.
EVENT_OVERHEAD_BYTES = 64 * 1024
FOLDER_META = ".customllm.yaml"
SIDECAR_SUFFIX = ".meta.yaml"


def iter_files(paths: list[Path]) -> Iterator[tuple[Path, Path]]:
    """(file, root) pairs; the root makes doc ids stable relative paths."""
    for path in paths:
        if path.is_dir():
            for file in sorted(path.rglob("*")):
                if file.is_file() and file.suffix.lower() in CONTENT_TYPES:
                    yield file, path
        elif path.is_file():
            yield path, path.parent
        else:
            raise typer.BadParameter(f"{path} does not exist")


def _yaml(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise typer.BadParameter(f"{path} must hold a mapping of governance fields")
    return data


def governance_for(file: Path, root: Path, defaults: dict[str, Any]) -> dict[str, Any]:
    """Flags < folder files (outermost first) < the file's own sidecar."""
    merged = dict(defaults)
    folder = root
    merged.update(_yaml(root / FOLDER_META))
    for part in file.parent.relative_to(root).parts:
        folder = folder / part
        merged.update(_yaml(folder / FOLDER_META))
    merged.update(_yaml(file.with_name(file.name + SIDECAR_SUFFIX)))
    return {k: v for k, v in merged.items() if v is not None}


GOVERNANCE_KEYS = {"doc_id", "title", "source", "uri", "license", "privacy_class", "acl",
                   "lineage", "metadata", "content_type"}


def content_fields(file: Path, data: bytes, ref_root: Path | None,
                   max_event_bytes: int | None) -> dict[str, str]:
    """Text as text; PDF/DOCX as base64 bytes, or as a reference relative to ``ref_root`` (a
    folder the ingest workers mount and allow-list) when the file lies under it. A binary file
    too big for one event without a reference root is refused before anything is sent."""
    if ref_root is not None and file.resolve().is_relative_to(ref_root.resolve()):
        return {"content_ref": file.resolve().relative_to(ref_root.resolve()).as_posix()}
    if file.suffix.lower() not in BINARY_SUFFIXES:
        return {"content": data.decode("utf-8")}
    encoded = base64.b64encode(data).decode("ascii")
    if max_event_bytes is not None and len(encoded) + EVENT_OVERHEAD_BYTES > max_event_bytes:
        raise ValueError(f"{len(data)} bytes is too big for one event (limit "
                         f"{max_event_bytes} with base64); put it under --ref-root")
    return {"content_base64": encoded}


def build_change(file: Path, root: Path, defaults: dict[str, Any], id_prefix: str,
                 version: int, ref_root: Path | None = None,
                 max_event_bytes: int | None = None) -> DocChange:
    meta = governance_for(file, root, defaults)
    unknown = sorted(set(meta) - GOVERNANCE_KEYS)
    if unknown:
        raise ValueError(f"unknown metadata key(s) {unknown}; allowed: {sorted(GOVERNANCE_KEYS)}")
    doc_id = meta.pop("doc_id", None) or id_prefix + file.relative_to(root).as_posix()
    content = content_fields(file, file.read_bytes(), ref_root, max_event_bytes)
    return DocChange(
        doc_id=doc_id, version=version, op="upsert", **content,
        content_type=meta.pop("content_type", CONTENT_TYPES[file.suffix.lower()]),
        uri=meta.pop("uri", file.resolve().as_uri()),
        # A PDF or Word file is known by its file name ("handbook.pdf p. 12" in citations).
        title=meta.pop("title", file.name if file.suffix.lower() in BINARY_SUFFIXES
                       else file.stem),
        lineage={"publisher": "customllm publish", "path": str(file), **meta.pop("lineage", {})},
        **meta,
    )


def publish(
    paths: list[Path] = typer.Argument(None, help="Files or folders (.txt, .md, .html, .pdf, "
                                       ".docx)."),
    delete: list[str] = typer.Option([], "--delete", help="Delete this doc id (repeatable)."),
    source: str | None = typer.Option(None, help="Where the documents come from."),
    license: str | None = typer.Option(None, "--license", help="Licence, e.g. CC-BY-4.0."),
    privacy_class: str = typer.Option("internal", help="public|internal|confidential|restricted"),
    acl: list[str] = typer.Option([], "--acl", help="Principal or group allowed (repeatable)."),
    id_prefix: str = typer.Option("", help="Prefix for doc ids (relative paths by default)."),
    version: int | None = typer.Option(None, help="Event version (default: now in µs)."),
    ref_root: Path | None = typer.Option(
        None, help="Send files under this folder by reference (path relative to it) instead of "
        "their bytes; the ingest workers must allow-list the same folder."),
) -> None:
    """Publish document upserts (or deletes) to docs.changes, keyed by doc id."""
    settings = get_settings()
    telemetry.setup_tracing("customllm-cli", settings)
    tracer = telemetry.tracer(__name__)
    producers = SourceProducers(settings)
    event_version = version if version is not None else time.time_ns() // 1000
    defaults = {"source": source, "license": license, "privacy_class": privacy_class,
                "acl": list(acl)}
    files = list(iter_files(paths or []))
    skipped = 0
    errors: list[str] = []
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("publishing", total=len(files) + len(delete))
        for file, root in files:
            try:
                change = build_change(file, root, defaults, id_prefix, event_version, ref_root,
                                      ingest_settings().max_document_bytes)
            except (UnicodeDecodeError, ValueError) as exc:
                console.print(f"[yellow]skipped[/] {file}: {exc}")
                skipped += 1
                progress.advance(task)
                continue
            try:
                producer = producers.for_source(change.source)
            except SourceNotApproved as exc:
                console.print(f"[yellow]skipped[/] {file}: {exc}")
                skipped += 1
                progress.advance(task)
                continue
            _send(tracer, producer, change, errors)
            progress.advance(task)
        for doc_id in delete:
            change = DocChange(doc_id=doc_id, version=event_version, op="delete", source=source)
            try:
                _send(tracer, producers.for_source(source), change, errors)
            except SourceNotApproved as exc:
                console.print(f"[red]error:[/] cannot delete {doc_id}: {exc}")
                skipped += 1
            progress.advance(task)
        producers.flush(errors)
    console.print(f"published {len(files) + len(delete) - skipped} event(s) to {DOCS_CHANGES}"
                  + (f", skipped {skipped}" if skipped else ""))
    telemetry.shutdown_tracing()


def _send(tracer: Any, producer: Any, change: DocChange, errors: list[str]) -> None:
    with tracer.start_as_current_span("publish", kind=SpanKind.PRODUCER,
                                      attributes={"doc.id": change.doc_id, "op": change.op}):
        send(producer, DOCS_CHANGES, change.doc_id, change.to_json(), telemetry.inject_headers(),
             errors)
