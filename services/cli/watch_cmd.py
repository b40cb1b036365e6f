"""`customllm watch DIR`: keep the index in step with a folder, on watchdog.

Publishes like `customllm publish` (same doc ids, governance labels from flags,
``.customllm.yaml`` and sidecars, same content encoding, as the source's approved Kafka
identity), but only what changed: the manifest (services/ingest/watch.py) remembers what was
published, so a restart publishes nothing for unchanged files, and deletions made while the
watcher was down are still published on the next start.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from services.cli.console import console
from services.cli.publish import (
    CONTENT_TYPES,
    FOLDER_META,
    SIDECAR_SUFFIX,
    _send,
    build_change,
    governance_for,
)
from services.common import telemetry
from services.common.config import Settings, get_settings
from services.common.events import DocChange
from services.common.source_publisher import SourceNotApproved, SourceProducers
from services.ingest.config import ingest_settings
from services.ingest.reconcile import file_hash
from services.ingest.watch import (
    Action,
    Debouncer,
    FileState,
    Manifest,
    decide,
    manifest_path,
    meta_hashes,
    plan_scan,
)

_COLUMNS = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn())


@dataclass
class WatchResult:
    published: dict[str, int] = field(default_factory=lambda: {"upsert": 0, "acl": 0,
                                                               "delete": 0})
    skipped: int = 0


class Watcher:
    """One watched folder: scan, decide, publish, remember."""

    def __init__(self, folder: Path, settings: Settings, *, defaults: dict[str, Any],
                 id_prefix: str = "", ref_root: Path | None = None,
                 manifest: Path | None = None, debounce_s: float = 1.0,
                 producers: SourceProducers | None = None) -> None:
        self.folder = folder.resolve()
        self.settings = settings
        self.defaults = defaults
        self.id_prefix = id_prefix
        self.ref_root = ref_root
        self.manifest = Manifest(manifest or manifest_path(settings.state_path, self.folder,
                                                           id_prefix))
        self.debouncer = Debouncer(debounce_s)
        self.producers = producers or SourceProducers(settings)
        self.tracer = telemetry.tracer(__name__)
        self.result = WatchResult()
        self._lock = threading.Lock()

    # --- what is on disk ---------------------------------------------------------------------
    def _supported(self, path: Path) -> bool:
        return path.suffix.lower() in CONTENT_TYPES and not path.name.endswith(SIDECAR_SUFFIX)

    def _state(self, file: Path) -> tuple[str, FileState] | None:
        try:
            meta = governance_for(file, self.folder, self.defaults)
            content = file_hash(file)
        except (OSError, ValueError, typer.BadParameter) as exc:
            console.print(f"[yellow]skipped[/] {file}: {exc}")
            self.result.skipped += 1
            return None
        rel = file.relative_to(self.folder).as_posix()
        doc_id = meta.get("doc_id") or self.id_prefix + rel
        full, access = meta_hashes(meta)
        return doc_id, FileState(doc_id, rel, content, full, access)

    def _files_under(self, base: Path) -> list[Path]:
        if base.is_file():
            return [base] if self._supported(base) else []
        if not base.is_dir():
            return []
        return sorted(p for p in base.rglob("*") if p.is_file() and self._supported(p))

    def _states(self, files: Iterable[Path], progress: Progress | None = None
                ) -> dict[str, FileState]:
        files = list(files)
        task = progress.add_task("scanning", total=len(files)) if progress else None
        states: dict[str, FileState] = {}
        for file in files:
            found = self._state(file)
            if found:
                states[found[0]] = found[1]
            if progress is not None and task is not None:
                progress.advance(task)
        return states

    # --- start-up and changes ----------------------------------------------------------------
    def initial_scan(self, show_progress: bool = True) -> list[Action]:
        """Compare the whole tree with the manifest and publish the difference."""
        with Progress(*_COLUMNS, console=console, disable=not show_progress) as progress:
            states = self._states(self._files_under(self.folder), progress)
            actions = plan_scan(states, self.manifest.entries)
            self.publish(actions, states, progress)
        return actions

    def refresh(self, paths: Iterable[str]) -> list[Action]:
        """Debounced paths that changed: re-read what they affect, publish what differs."""
        files: set[Path] = set()
        prefixes: set[str] = set()
        for raw in paths:
            path = Path(raw)
            if not path.is_relative_to(self.folder):
                continue
            rel = path.relative_to(self.folder).as_posix()
            if path.name == FOLDER_META:  # labels of a whole subtree changed
                base = path.parent
            elif path.name.endswith(SIDECAR_SUFFIX):  # labels of one file changed
                base = path.with_name(path.name[: -len(SIDECAR_SUFFIX)])
            else:
                base = path
            files.update(self._files_under(base))
            base_rel = base.relative_to(self.folder).as_posix()
            prefixes.add("" if base_rel == "." else base_rel)
            prefixes.add(rel)
        states = self._states(files)
        gone = [doc_id for doc_id, entry in self.manifest.entries.items()
                if doc_id not in states and any(_under(entry.path, p) for p in prefixes)
                and not (self.folder / entry.path).exists()]
        actions = [a for a in (decide(states.get(d), d, self.manifest.entries.get(d))
                               for d in sorted(set(states) | set(gone))) if a is not None]
        self.publish(actions, states)
        return actions

    # --- publishing --------------------------------------------------------------------------
    def publish(self, actions: list[Action], states: dict[str, FileState],
                progress: Progress | None = None) -> None:
        """Send the events, wait for the broker, then remember them in the manifest (only when
        every delivery succeeded: otherwise the next scan sends them again)."""
        if not actions:
            return
        version = time.time_ns() // 1000
        errors: list[str] = []
        sent: list[Action] = []
        task = progress.add_task("publishing", total=len(actions)) if progress else None
        with self._lock:
            for action in actions:
                change = self._change(action, version)
                if change is not None:
                    try:
                        _send(self.tracer, self.producers.for_source(change.source), change,
                              errors)
                        sent.append(action)
                    except SourceNotApproved as exc:
                        console.print(f"[red]not published[/] {action.doc_id}: {exc}")
                        self.result.skipped += 1
                if progress is not None and task is not None:
                    progress.advance(task)
            self.producers.flush(errors)
            if errors:
                for error in errors:
                    console.print(f"[red]delivery failed:[/] {error}")
                return
            for action in sent:
                self.manifest.record(action.doc_id, states.get(action.doc_id)
                                     if action.op != "delete" else None, version)
                self.result.published[action.op] += 1
            self.manifest.save()
        for action in sent:
            console.print(f"{action.op:>6} {action.doc_id}")

    def _change(self, action: Action, version: int) -> DocChange | None:
        source = self.defaults.get("source")
        if action.op == "delete":
            entry = self.manifest.entries.get(action.doc_id)
            labels = governance_for(self.folder / entry.path, self.folder, self.defaults) \
                if entry is not None else {}
            return DocChange(doc_id=action.doc_id, version=version, op="delete",
                             source=labels.get("source", source))
        assert action.path is not None
        file = self.folder / action.path
        try:
            change = build_change(file, self.folder, self.defaults, self.id_prefix, version,
                                  self.ref_root, ingest_settings().max_document_bytes)
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            console.print(f"[yellow]skipped[/] {file}: {exc}")
            self.result.skipped += 1
            return None
        if action.op == "acl":
            return DocChange(doc_id=change.doc_id, version=version, op="acl", acl=change.acl,
                             privacy_class=change.privacy_class, license=change.license,
                             source=change.source)
        return change

    # --- the live loop -----------------------------------------------------------------------
    def run(self, stop: threading.Event, tick_s: float = 0.1,
            on_idle: Callable[[], None] | None = None) -> None:
        """Watch until ``stop`` is set: events are debounced, then published in batches."""
        handler = _Handler(self.debouncer)
        observer = Observer()
        observer.schedule(handler, str(self.folder), recursive=True)
        observer.start()
        try:
            while not stop.is_set():
                due = self.debouncer.due(time.monotonic())
                if due:
                    self.refresh(due)
                elif on_idle is not None:
                    on_idle()
                stop.wait(tick_s)
        finally:
            observer.stop()
            observer.join(timeout=5)


def _under(path: str, prefix: str) -> bool:
    return not prefix or path == prefix or path.startswith(prefix.rstrip("/") + "/")


class _Handler(FileSystemEventHandler):
    """Every event only marks paths; the loop decides after the quiet period."""

    def __init__(self, debouncer: Debouncer) -> None:
        self.debouncer = debouncer

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        now = time.monotonic()
        self.debouncer.touch(str(event.src_path), now)
        dest = getattr(event, "dest_path", "")
        if dest:
            self.debouncer.touch(str(dest), now)


def watch(
    folder: Path = typer.Argument(..., help="Folder to keep indexed."),
    source: str | None = typer.Option(None, help="Where the documents come from (or set "
                                      "`source:` in .customllm.yaml)."),
    license: str | None = typer.Option(None, "--license", help="Licence, e.g. CC-BY-4.0."),
    privacy_class: str = typer.Option("internal", help="public|internal|confidential|restricted"),
    acl: list[str] = typer.Option([], "--acl", help="Principal or group allowed (repeatable)."),
    id_prefix: str = typer.Option("", help="Prefix for doc ids (relative paths by default)."),
    debounce: float = typer.Option(1.0, help="Seconds a file must be quiet before publishing."),
    once: bool = typer.Option(False, "--once", help="Scan, publish the difference, exit."),
    ref_root: Path | None = typer.Option(None, help="As for publish: files under it go by "
                                         "reference."),
    manifest: Path | None = typer.Option(None, help="Manifest file (default: under the state "
                                         "dir, one per folder and prefix)."),
) -> None:
    """Publish upserts and deletes for a folder as it changes (Ctrl-C stops)."""
    if not folder.is_dir():
        raise typer.BadParameter(f"{folder} is not a folder")
    settings = get_settings()
    telemetry.setup_tracing("customllm-watch", settings)
    defaults = {"source": source, "license": license, "privacy_class": privacy_class,
                "acl": list(acl)}
    watcher = Watcher(folder, settings, defaults=defaults, id_prefix=id_prefix,
                      ref_root=ref_root, manifest=manifest, debounce_s=debounce)
    watcher.initial_scan()
    counts = watcher.result.published
    console.print(f"initial scan: {counts['upsert']} upsert(s), {counts['acl']} acl change(s), "
                  f"{counts['delete']} delete(s) published; "
                  f"{len(watcher.manifest.entries)} file(s) in the manifest")
    if not once:
        console.print(f"watching {watcher.folder} (debounce {debounce:g} s); Ctrl-C stops")
        stop = threading.Event()
        try:
            watcher.run(stop)
        except KeyboardInterrupt:
            stop.set()
    telemetry.shutdown_tracing()
