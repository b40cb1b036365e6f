"""Where LoRA adapters live: one peft folder per adapter name, looked up on every request.

Promoting an adapter means writing ``<adapters dir>/<name>/`` (``adapter_config.json`` plus
weights); the engine sees it on the next request, and sees a re-promoted one by its changed
weights, so serving never needs a restart.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from services.rag.generation.base import UnknownAdapter

CONFIG_FILE = "adapter_config.json"
WEIGHT_FILES = ("adapter_model.safetensors", "adapter_model.bin")
# A name is one folder: no separators, no "..", nothing a path join could escape with.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclass(frozen=True)
class AdapterFolder:
    name: str
    path: Path
    version: tuple[int, int]  # (mtime_ns, size) of the weights: changes when re-promoted


class AdapterLibrary:
    """The adapters directory; reads the disk on each call (a ``stat`` or two, no cache)."""

    def __init__(self, root: Path) -> None:
        self.root = root.expanduser()

    def available(self) -> list[str]:
        """Adapter names, sorted; a folder without ``adapter_config.json`` is not an adapter."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir()
                      if _NAME.match(p.name) and (p / CONFIG_FILE).is_file())

    def resolve(self, name: str) -> AdapterFolder:
        """The adapter called ``name``, or :class:`UnknownAdapter` listing those that exist."""
        path = self.root / name
        if not _NAME.match(name) or not (path / CONFIG_FILE).is_file():
            raise UnknownAdapter(name, self.available(), f"adapters dir {self.root}")
        weights = next((path / f for f in WEIGHT_FILES if (path / f).is_file()), None)
        if weights is None:
            raise UnknownAdapter(name, self.available(),
                                 f"{path} has {CONFIG_FILE} but no adapter weights")
        stat = weights.stat()
        return AdapterFolder(name, path, (stat.st_mtime_ns, stat.st_size))
