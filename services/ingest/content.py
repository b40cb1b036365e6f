"""Where an upsert's bytes come from: the event itself (text or base64) or a file reference.

A reference lets a producer hand over files too big for a Kafka message, but it also lets
whoever can write ``docs.changes`` point the ingest worker at any path it can read. So a
reference is only ever resolved inside an allow-listed root: relative paths only, no ``..``
escape, symlinks resolved before the check, regular files only, and a size cap.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from services.common.events import DocChange
from services.common.exceptions import InvalidEvent

ROOTS_VARIABLE = "CUSTOMLLM_INGEST_FILE_ROOTS"  # named in errors (services/ingest/config.py)
DEFAULT_MAX_FILE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class FileAccess:
    """What the worker may read for ``content_ref``; no roots means references are refused."""

    roots: tuple[Path, ...] = ()
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES


def resolve_ref(ref: str, access: FileAccess) -> Path:
    """The real path of ``ref`` inside one of the roots, or InvalidEvent("forbidden")."""
    if not access.roots:
        raise InvalidEvent("forbidden", "content_ref given but this ingest worker has no "
                           f"allow-listed file roots ({ROOTS_VARIABLE})")
    relative = Path(ref)
    if "\x00" in ref or relative.is_absolute() or ".." in relative.parts:
        raise InvalidEvent("forbidden", f"content_ref {ref!r} must be a relative path without "
                           "'..' inside an allow-listed root")
    for root in access.roots:
        candidate = (root / relative).resolve()
        if not candidate.is_relative_to(root):
            raise InvalidEvent("forbidden", f"content_ref {ref!r} leaves its root {root} "
                               "(a symbolic link?)")
        if candidate.exists():
            if not candidate.is_file():
                raise InvalidEvent("forbidden", f"content_ref {ref!r} is not a regular file")
            return candidate
    raise InvalidEvent("processing_error", f"content_ref {ref!r} not found under "
                       f"{', '.join(str(r) for r in access.roots)}")


def read_ref(ref: str, access: FileAccess) -> bytes:
    path = resolve_ref(ref, access)
    size = path.stat().st_size
    if size > access.max_file_bytes:
        raise InvalidEvent("too_large", f"content_ref {ref!r} is {size} bytes, limit is "
                           f"{access.max_file_bytes}")
    return path.read_bytes()


def raw_content(change: DocChange, access: FileAccess) -> bytes | str:
    """Text stays text (``content``); base64 and references give the file's bytes."""
    if change.content is not None:
        return change.content
    if change.content_base64 is not None:
        try:
            return base64.b64decode(change.content_base64, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidEvent("undecodable", f"content_base64 is not valid base64: {exc}"
                               ) from exc
    if change.content_ref is not None:
        return read_ref(change.content_ref, access)
    raise InvalidEvent("schema_violation", "upsert without content, content_base64 or "
                       "content_ref")


def as_text(data: bytes | str, what: str) -> str:
    if isinstance(data, str):
        return data
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidEvent("undecodable", f"{what} is not valid UTF-8 text: {exc}") from exc


def roots_summary(roots: Sequence[Path]) -> str:
    return os.pathsep.join(str(r) for r in roots)
