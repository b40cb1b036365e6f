"""The adapter registry: versions in Postgres, their files in the serving library.

A library in ``services.common`` so the fine-tuning worker (registers and promotes by the
gate), the CLI and the web console (promote and retire by a person) share one implementation.
A person's promotion or retirement is recorded in ``adapter_decisions`` (migration 0008) with
who, why and the gate verdict it was decided on, in the same transaction as the change.

Layout of the adapters directory (what the local engine reads, see
``services/common/generation/adapters.py``):

* ``<name>@v<N>/`` — every registered version, written once (peft files plus the marker
  ``customllm-adapter.json`` naming the version). A candidate is served by this exact name,
  which is how the promotion gate asks for it.
* ``<name>`` — a relative symbolic link to the promoted version's folder, swapped atomically
  (``rename`` of a new link over the old one). The engine reloads an adapter when its weights
  file changes, so a promotion is served on the next request, without a restart.

A version is of one ``kind``: ``adapter`` (peft files, served on top of the base) or ``model``
(a complete model folder, ``config.json`` plus ``model.safetensors`` and the tokenizer, trained by
full fine-tuning or continued pretraining, served instead of the base). Both share names,
versions, links, the gate and decisions: a name serves whatever version is promoted.

Postgres is the source of truth (status, metrics, gate, card); the links follow it. At most one
version per name is promoted (a partial unique index); promoting another retires the previous
one, and promoting a retired version is how a rollback is done.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from services.common.exceptions import CustomLLMError


class RegistryError(CustomLLMError):
    """A version that does not exist, whose files are missing, or a refused decision."""


def version_label(version: int) -> str:
    return f"v{version}"


MARKER = "customllm-adapter.json"
PEFT_FILES = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin")
MODEL_FILES = ("config.json", "model.safetensors")
KINDS = ("adapter", "model")


@dataclass(frozen=True)
class AdapterVersion:
    name: str
    version: int
    base_model: str
    method: str
    job_id: str | None
    snapshot_id: str | None
    dataset_hash: str | None
    status: str
    metrics: dict[str, Any]
    gate: dict[str, Any]
    hyperparameters: dict[str, Any]
    card_markdown: str
    path: str
    mlflow_run_id: str | None
    created_at: datetime
    promoted_at: datetime | None
    retired_at: datetime | None
    kind: str = "adapter"

    @property
    def label(self) -> str:
        return version_label(self.version)

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.label}"


_COLUMNS = ("name, version, base_model, method, job_id, snapshot_id, dataset_hash, status, "
            "metrics, gate, hyperparameters, card_markdown, path, mlflow_run_id, created_at, "
            "promoted_at, retired_at, kind")


def _row(row: Any) -> AdapterVersion:
    return AdapterVersion(**row._mapping)


def version_folder(adapters_dir: Path, name: str, version: int) -> Path:
    return adapters_dir / f"{name}@{version_label(version)}"


def _lock_name(conn: Connection, name: str) -> None:
    """Serialize version allocation and promotion per adapter name across workers."""
    conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('customllm.adapter:' || :n))"),
                 {"n": name})


def register(engine: Engine, *, name: str, source_dir: Path, adapters_dir: Path,
             base_model: str, method: str, job_id: str | None, snapshot_id: str | None,
             dataset_hash: str | None, hyperparameters: dict[str, Any],
             mlflow_run_id: str | None = None, kind: str = "adapter",
             source_discarded: bool = False) -> AdapterVersion:
    """The next version of ``name`` as a candidate, its files copied into the library
    (``kind`` ``model``: a complete model folder, see the module docstring).

    ``source_discarded``: the caller deletes ``source_dir`` once this returns, so its files
    are hard-linked instead of copied where the file system allows. A full model is half a
    gigabyte or more, and a second copy of it is what a nearly full disk cannot hold. A
    user's own folder is always copied: a later edit in place must not change a version.

    Idempotent per job: a job that registered already (and crashed later) gets its version
    back instead of a second one."""
    if kind not in KINDS:
        raise RegistryError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    with engine.begin() as conn:
        _lock_name(conn, name)
        if job_id is not None:
            existing = conn.execute(text(f"SELECT {_COLUMNS} FROM adapters WHERE job_id = :j"),
                                    {"j": job_id}).first()
            if existing is not None:
                return _row(existing)
        version = int(conn.execute(text("SELECT coalesce(max(version), 0) + 1 FROM adapters "
                                        "WHERE name = :n"), {"n": name}).scalar_one())
        folder = version_folder(adapters_dir, name, version)
        _materialise(source_dir, folder, {"name": name, "version": version_label(version),
                                          "base_model": base_model, "method": method,
                                          "job_id": job_id, "kind": kind},
                     link=source_discarded)
        row = conn.execute(text(
            f"INSERT INTO adapters (name, version, base_model, method, job_id, snapshot_id, "
            f"dataset_hash, hyperparameters, path, mlflow_run_id, kind) VALUES (:n, :v, :b, "
            f":m, :j, :s, :d, CAST(:h AS jsonb), :p, :r, :k) RETURNING {_COLUMNS}"),
            {"n": name, "v": version, "b": base_model, "m": method, "j": job_id,
             "s": snapshot_id, "d": dataset_hash, "h": json.dumps(hyperparameters),
             "p": str(folder), "r": mlflow_run_id, "k": kind}).first()
    return _row(row)


def _materialise(source: Path, folder: Path, marker: dict[str, Any], *, link: bool) -> None:
    """Copy the peft (or model) files into a staging folder, then rename it into place: the
    serving engine never sees a half-written version."""
    if marker.get("kind") == "model":
        missing = [f for f in MODEL_FILES if not (source / f).is_file()]
        if missing:
            raise RegistryError(f"{source} holds no complete model ({', '.join(missing)} "
                                "missing)")
    elif not (source / "adapter_config.json").is_file():
        raise RegistryError(f"{source} holds no peft adapter (adapter_config.json missing)")
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        for item in source.iterdir():
            if item.is_file():
                _place(item, staging / item.name, link=link)
        (staging / MARKER).write_text(json.dumps(marker, indent=2))
        if folder.exists():  # left by a registration whose transaction did not commit
            shutil.rmtree(folder)
        staging.rename(folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _place(item: Path, target: Path, *, link: bool) -> None:
    """One file into the staging folder, with a fresh mtime: a new version."""
    if link:
        try:
            os.link(item, target)
            os.utime(target)
            return
        except OSError:  # another file system, or one without hard links: copy instead
            target.unlink(missing_ok=True)
    shutil.copyfile(item, target)


def record_evaluation(engine: Engine, name: str, version: int, metrics: dict[str, Any],
                      gate: dict[str, Any], card_markdown: str) -> None:
    with engine.begin() as conn:
        conn.execute(text(
            "UPDATE adapters SET metrics = CAST(:m AS jsonb), gate = CAST(:g AS jsonb), "
            "card_markdown = :c WHERE name = :n AND version = :v"),
            {"m": json.dumps(metrics), "g": json.dumps(gate), "c": card_markdown, "n": name,
             "v": version})


def set_card(engine: Engine, name: str, version: int, card_markdown: str) -> None:
    with engine.begin() as conn:
        conn.execute(text("UPDATE adapters SET card_markdown = :c WHERE name = :n "
                          "AND version = :v"), {"c": card_markdown, "n": name, "v": version})


def promote(engine: Engine, name: str, version: int, adapters_dir: Path, *,
            actor: str | None = None, reason: str | None = None,
            require_gate: bool = False) -> AdapterVersion:
    """Make ``version`` the served one: the previous promoted version is retired and the
    ``<name>`` link swapped, in the same transaction (a failed swap promotes nothing).

    ``actor`` and ``reason`` record a person's decision; ``require_gate`` refuses a version
    whose evaluation gate did not pass (the console always sets it)."""
    with engine.begin() as conn:
        _lock_name(conn, name)
        target = conn.execute(text(f"SELECT {_COLUMNS} FROM adapters WHERE name = :n AND "
                                   "version = :v"), {"n": name, "v": version}).first()
        if target is None:
            raise RegistryError(f"no adapter {name}@{version_label(version)} in the registry")
        if require_gate and not (target.gate or {}).get("passed"):
            raise RegistryError(f"{name}@{version_label(version)}: its evaluation gate did not "
                                "pass; only a version that passed may be promoted here")
        if actor is not None:
            _record_decision(conn, name, version, "promote", actor, reason, target.gate)
        if not Path(target.path).is_dir():
            raise RegistryError(f"{name}@{version_label(version)}: its files are missing "
                                f"({target.path})")
        conn.execute(text("UPDATE adapters SET status = 'retired', retired_at = now() "
                          "WHERE name = :n AND status = 'promoted' AND version <> :v"),
                     {"n": name, "v": version})
        row = conn.execute(text(
            "UPDATE adapters SET status = 'promoted', promoted_at = now(), retired_at = NULL "
            f"WHERE name = :n AND version = :v RETURNING {_COLUMNS}"),
            {"n": name, "v": version}).first()
        link_promoted(adapters_dir, name, Path(target.path))
    return _row(row)


def link_promoted(adapters_dir: Path, name: str, folder: Path) -> None:
    """Point ``<adapters_dir>/<name>`` at ``folder`` atomically (a new link renamed over the
    old one). A real folder of that name (an adapter placed by hand) is never replaced."""
    link = adapters_dir / name
    if link.exists() and not link.is_symlink():
        raise RegistryError(f"{link} is a folder placed by hand, not a registry link; move it "
                            "away (or register it) before promoting a version of that name")
    adapters_dir.mkdir(parents=True, exist_ok=True)
    staging = adapters_dir / f".{name}.link-{os.getpid()}"
    staging.unlink(missing_ok=True)
    staging.symlink_to(os.path.relpath(folder, adapters_dir))
    os.replace(staging, link)


def retire(engine: Engine, name: str, version: int, adapters_dir: Path, *,
           actor: str | None = None, reason: str | None = None) -> AdapterVersion:
    """Take a version out of use. Retiring the promoted version stops serving the name (the
    link is removed); promote another version to serve it again."""
    with engine.begin() as conn:
        _lock_name(conn, name)
        was = conn.execute(text("SELECT status FROM adapters WHERE name = :n AND version = :v"),
                           {"n": name, "v": version}).scalar()
        if was is None:
            raise RegistryError(f"no adapter {name}@{version_label(version)} in the registry")
        if actor is not None:
            _record_decision(conn, name, version, "retire", actor, reason, None)
        row = conn.execute(text(
            "UPDATE adapters SET status = 'retired', retired_at = coalesce(retired_at, now()) "
            f"WHERE name = :n AND version = :v RETURNING {_COLUMNS}"),
            {"n": name, "v": version}).first()
        link = adapters_dir / name
        if was == "promoted" and link.is_symlink():
            link.unlink()
    return _row(row)


def get(engine: Engine, name: str, version: int | None = None) -> AdapterVersion | None:
    """That version; without one the promoted version, else the newest."""
    with engine.connect() as conn:
        if version is not None:
            row = conn.execute(text(f"SELECT {_COLUMNS} FROM adapters WHERE name = :n AND "
                                    "version = :v"), {"n": name, "v": version}).first()
        else:
            row = conn.execute(text(f"SELECT {_COLUMNS} FROM adapters WHERE name = :n "
                                    "ORDER BY (status = 'promoted') DESC, version DESC LIMIT 1"),
                               {"n": name}).first()
    return _row(row) if row is not None else None


def promoted(engine: Engine, name: str) -> AdapterVersion | None:
    with engine.connect() as conn:
        row = conn.execute(text(f"SELECT {_COLUMNS} FROM adapters WHERE name = :n AND "
                                "status = 'promoted'"), {"n": name}).first()
    return _row(row) if row is not None else None


def list_versions(engine: Engine, name: str | None = None,
                  include_retired: bool = True) -> list[AdapterVersion]:
    with engine.connect() as conn:
        rows = conn.execute(text(
            f"SELECT {_COLUMNS} FROM adapters WHERE (CAST(:n AS text) IS NULL OR name = :n) "
            "AND (:r OR status <> 'retired') ORDER BY name, version DESC"),
            {"n": name, "r": include_retired}).all()
    return [_row(row) for row in rows]


def _record_decision(conn: Connection, name: str, version: int, action: str, actor: str,
                     reason: str | None, gate: dict[str, Any] | None) -> None:
    if not (reason or "").strip():
        raise RegistryError(f"a reason is required to {action} {name}@{version_label(version)}")
    conn.execute(text("INSERT INTO adapter_decisions (name, version, action, actor, reason, "
                      "gate) VALUES (:n, :v, :a, :actor, :reason, CAST(:gate AS jsonb))"),
                 {"n": name, "v": version, "a": action, "actor": actor,
                  "reason": reason.strip(), "gate": json.dumps(gate or {})})


@dataclass(frozen=True)
class AdapterDecision:
    name: str
    version: int
    action: str
    actor: str
    reason: str
    gate: dict[str, Any]
    at: datetime


def decisions(engine: Engine, name: str | None = None, limit: int = 100) -> list[AdapterDecision]:
    """People's promotions and retirements, newest first."""
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT name, version, action, actor, reason, gate, at FROM adapter_decisions "
            "WHERE (CAST(:n AS text) IS NULL OR name = :n) ORDER BY at DESC, id DESC "
            "LIMIT :l"), {"n": name, "l": limit}).all()
    return [AdapterDecision(**row._mapping) for row in rows]
