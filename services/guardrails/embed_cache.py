"""An embedding function with an on-disk cache, for offline jobs (building the shipped heads,
the benchmark) that embed the same 25k texts several times on a 2-core machine. Not used on
the request path."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from services.guardrails.attack_corpus import EmbedFn


class CachedEmbed:
    """``embed`` with memory: vectors by sha256 of the text, saved to ``path`` (npz)."""

    def __init__(self, embed: EmbedFn, path: Path | None = None) -> None:
        self.embed = embed
        self.path = path
        self.vectors: dict[str, np.ndarray] = {}
        if path is not None and path.is_file():
            with np.load(path) as stored:
                self.vectors = dict(zip(stored["keys"].tolist(), stored["vectors"],
                                        strict=True))

    @staticmethod
    def _key(text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()

    def __call__(self, texts: list[str]) -> np.ndarray:
        keys = [self._key(t) for t in texts]
        missing = list(dict.fromkeys(t for t, k in zip(texts, keys, strict=True)
                                     if k not in self.vectors))
        if missing:
            for text, vector in zip(missing, self.embed(missing), strict=True):
                self.vectors[self._key(text)] = np.asarray(vector, dtype=np.float32)
        return np.stack([self.vectors[k] for k in keys]) if keys else self.embed([])

    def save(self) -> None:
        if self.path is None or not self.vectors:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        keys = list(self.vectors)
        tmp = self.path.with_name(self.path.name + ".tmp.npz")
        np.savez(tmp, keys=np.asarray(keys), vectors=np.stack([self.vectors[k] for k in keys]))
        tmp.replace(self.path)
