"""Shared fixtures: a deterministic fake embedder and a CaseResult factory."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from services.common.evaluation.models import CaseResult
from services.common.grounding.text import tokens

DIM = 4096


def bag_of_words_embed(texts: list[str]) -> np.ndarray:
    """Unit-normalized hashed bag of words: cosine = shared normalized tokens / norms.
    Deterministic across processes (md5, not hash())."""
    out = np.zeros((len(texts), DIM), dtype=np.float32)
    for i, text in enumerate(texts):
        for tok in tokens(text):
            out[i, int(hashlib.md5(tok.encode()).hexdigest(), 16) % DIM] += 1.0
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return np.divide(out, norms, out=np.zeros_like(out), where=norms > 0)


@pytest.fixture
def fake_embed():
    return bag_of_words_embed


def result(**overrides) -> CaseResult:
    fields = {"run_id": "run-1", "case_id": "c1", "question": "Where is the Eiffel Tower?",
              "expected": "answer"}
    fields.update(overrides)
    return CaseResult(**fields)


@pytest.fixture
def make_result():
    return result
