"""Where LoRA adapters live: one peft folder per adapter name, looked up on every request.

Promoting an adapter means writing ``<adapters dir>/<name>/`` (``adapter_config.json`` plus
weights); the engine sees it on the next request, and sees a re-promoted one by its changed
weights, so serving never needs a restart.

The adapter registry (``services/finetune/registry.py``) keeps every version in
``<name>@v<N>/`` and makes ``<name>`` a link to the promoted one, so ``name`` serves the promoted
version and ``name@v3`` exactly version 3 (how the promotion gate asks for a candidate). A
version folder carries ``customllm-adapter.json``; its ``version`` is what replies report.

A registry version of kind ``model`` (full fine-tuning or continued pretraining) is a complete
model folder (``config.json`` + ``model.safetensors``, marker ``kind: model``) under the same
names; the engine serves it in place of the base rather than on top of it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from services.common.generation.base import UnknownAdapter

CONFIG_FILE = "adapter_config.json"
WEIGHT_FILES = ("adapter_model.safetensors", "adapter_model.bin")
MODEL_CONFIG = "config.json"
MODEL_WEIGHTS = "model.safetensors"
# A name is one folder: no separators, no "..", nothing a path join could escape with.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# A registry version: ``name@v3`` (``name@3`` is accepted and means the same folder).
_VERSIONED = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]{0,127})@v?(?P<version>\d{1,9})$")
MARKER = "customllm-adapter.json"


@dataclass(frozen=True)
class AdapterFolder:
    name: str
    path: Path
    version: tuple[int, int]  # (mtime_ns, size) of the weights: changes when re-promoted
    label: str | None = None  # the registry version ("v3") from the folder's marker, if any
    kind: str = "adapter"  # "model": all weights, served instead of the base


class AdapterLibrary:
    """The adapters directory; reads the disk on each call (a ``stat`` or two, no cache)."""

    def __init__(self, root: Path) -> None:
        self.root = root.expanduser()

    def available(self) -> list[str]:
        """Adapter (and model version) names, sorted; a folder without ``adapter_config.json``
        (or a registry model's files) is not one."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir()
                      if _NAME.match(p.name) and ((p / CONFIG_FILE).is_file() or _is_model(p)))

    def resolve(self, name: str) -> AdapterFolder:
        """The adapter called ``name``, or :class:`UnknownAdapter` listing those that exist."""
        versioned = _VERSIONED.match(name)
        folder = f"{versioned['name']}@v{int(versioned['version'])}" if versioned else name
        path = self.root / folder
        if not (_NAME.match(name) or versioned):
            raise UnknownAdapter(name, self.available(), f"adapters dir {self.root}")
        if _is_model(path):
            stat = (path / MODEL_WEIGHTS).stat()
            return AdapterFolder(name, path, (stat.st_mtime_ns, stat.st_size), _label(path),
                                 kind="model")
        if not (path / CONFIG_FILE).is_file():
            raise UnknownAdapter(name, self.available(), f"adapters dir {self.root}")
        weights = next((path / f for f in WEIGHT_FILES if (path / f).is_file()), None)
        if weights is None:
            raise UnknownAdapter(name, self.available(),
                                 f"{path} has {CONFIG_FILE} but no adapter weights")
        stat = weights.stat()
        return AdapterFolder(name, path, (stat.st_mtime_ns, stat.st_size), _label(path))


def _is_model(path: Path) -> bool:
    """A registry model version: its marker says ``kind: model`` and its files are there (a
    model folder placed by hand is not served: only the registry's, like its adapters)."""
    if not ((path / MODEL_CONFIG).is_file() and (path / MODEL_WEIGHTS).is_file()):
        return False
    try:
        return json.loads((path / MARKER).read_text()).get("kind") == "model"
    except (OSError, ValueError, AttributeError):
        return False


def _label(path: Path) -> str | None:
    try:
        version = json.loads((path / MARKER).read_text()).get("version")
    except (OSError, ValueError, AttributeError):
        return None
    return str(version) if version is not None else None


def served_version(backend: object, adapter: str | None) -> str | None:
    """The registry version ``adapter`` resolves to right now on this backend ("v3"), or None
    (no adapter, an adapter placed by hand, or a remote backend that does not say)."""
    library = getattr(getattr(backend, "engine", None), "adapters", None)
    if adapter is None or not isinstance(library, AdapterLibrary):
        return None
    try:
        return library.resolve(adapter).label
    except UnknownAdapter:
        return None
