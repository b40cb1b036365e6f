"""The folder watcher's memory and decisions, without Kafka or file system events.

A watcher that restarts must not republish a whole tree (every restart would cost a full
ingest pass and bury real changes), and one that misses a deletion leaves orphans in the index.
So it keeps a **manifest**: for every doc id it published, the file's content hash, the hash of
its governance labels and the version sent. On start it rescans the tree against the manifest;
while running it debounces file system events (editors write a file several times per save)
and decides per file:

* content hash changed (or new file): ``upsert``;
* only the access labels changed (a sidecar or ``.customllm.yaml`` edit): ``acl``, which
  re-embeds nothing;
* other labels changed (title, metadata): ``upsert`` (chunks are unchanged, so the embedder
  reuses every vector);
* file gone: ``delete``;
* nothing changed (a save without edits, a touch): nothing.

The manifest is written atomically after the broker acknowledged the events, so a crash
between publishing and saving republishes (idempotent), never forgets.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

ACCESS_LABELS = ("acl", "privacy_class", "license")
Op = Literal["upsert", "acl", "delete"]


def labels_hash(meta: Mapping[str, Any], keys: Iterable[str] | None = None) -> str:
    """Stable hash of governance labels (all of them, or only ``keys``)."""
    chosen = {k: meta.get(k) for k in (keys if keys is not None else sorted(meta))}
    return hashlib.sha256(json.dumps(chosen, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class FileState:
    """What the watcher sees of one supported file now."""

    doc_id: str
    path: str
    content_hash: str
    meta_hash: str  # every governance label
    access_hash: str  # acl, privacy_class, license only


@dataclass(frozen=True)
class Entry:
    """What the manifest remembers of one published document."""

    path: str
    content_hash: str
    meta_hash: str
    access_hash: str
    version: int


@dataclass(frozen=True)
class Action:
    op: Op
    doc_id: str
    path: str | None = None


def decide(now: FileState | None, doc_id: str, before: Entry | None) -> Action | None:
    """One document's action, given its file now (None: gone) and the manifest entry."""
    if now is None:
        return Action("delete", doc_id, before.path) if before is not None else None
    if before is None or before.content_hash != now.content_hash:
        return Action("upsert", doc_id, now.path)
    if before.meta_hash == now.meta_hash:
        return None
    if before.access_hash != now.access_hash and _same_except_access(before, now):
        return Action("acl", doc_id, now.path)
    return Action("upsert", doc_id, now.path)


def _same_except_access(before: Entry, now: FileState) -> bool:
    """Unknowable from hashes alone whether non-access labels changed too; the caller stores
    a hash of the labels without the access ones in ``meta_hash`` so equal means equal."""
    return before.meta_hash.split(":", 1)[0] == now.meta_hash.split(":", 1)[0]


def meta_hashes(meta: Mapping[str, Any]) -> tuple[str, str]:
    """(meta_hash, access_hash). ``meta_hash`` is "<other labels>:<access labels>" so
    :func:`decide` can tell an access-only change from any other label change."""
    others = {k: v for k, v in meta.items() if k not in ACCESS_LABELS}
    access = labels_hash(meta, ACCESS_LABELS)
    return f"{labels_hash(others)}:{access}", access


def plan_scan(files: Mapping[str, FileState], manifest: Mapping[str, Entry]) -> list[Action]:
    """Start-up: every file against the manifest, and every manifest entry without a file."""
    actions = [decide(files.get(doc_id), doc_id, manifest.get(doc_id))
               for doc_id in sorted(set(files) | set(manifest))]
    return [a for a in actions if a is not None]


class Manifest:
    """doc id → Entry, persisted as JSON next to the platform's state (not in the watched
    folder, which must not change because it is watched)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: dict[str, Entry] = {}
        self._lock = threading.Lock()
        if path.exists():
            raw = json.loads(path.read_text())
            self.entries = {k: Entry(**v) for k, v in raw.get("documents", {}).items()}

    def record(self, doc_id: str, state: FileState | None, version: int) -> None:
        with self._lock:
            if state is None:
                self.entries.pop(doc_id, None)
            else:
                self.entries[doc_id] = Entry(state.path, state.content_hash, state.meta_hash,
                                             state.access_hash, version)

    def save(self) -> None:
        """Atomic: a crash mid-write leaves the previous manifest, never a torn one."""
        with self._lock:
            data = {"documents": {k: asdict(v) for k, v in sorted(self.entries.items())}}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, self.path)


def manifest_path(state_path: Path, folder: Path, id_prefix: str) -> Path:
    """One manifest per (folder, doc id prefix): two watchers of one folder under different
    prefixes are two sources."""
    key = hashlib.sha256(f"{folder.resolve()}\x00{id_prefix}".encode()).hexdigest()[:16]
    return state_path / "watch" / f"{key}.json"


class Debouncer:
    """Paths become due once no event touched them for ``quiet_s`` seconds, so an editor's
    save burst (write temp, rename, touch) is published once, with the final content."""

    def __init__(self, quiet_s: float) -> None:
        self.quiet_s = quiet_s
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def touch(self, path: str, now: float) -> None:
        with self._lock:
            self._last[path] = now

    def due(self, now: float) -> list[str]:
        with self._lock:
            ready = sorted(p for p, t in self._last.items() if now - t >= self.quiet_s)
            for path in ready:
                del self._last[path]
        return ready

    def pending(self) -> int:
        with self._lock:
            return len(self._last)
