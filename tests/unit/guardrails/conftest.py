"""A stand-in sentence encoder for pure-logic tests: hashed bag of words, unit-normalized.
Deterministic and instant, and texts sharing words land close together, which is all the
training and calibration logic needs; the real MiniLM is exercised in test_packaged_heads."""

import hashlib
import re

import numpy as np
import pytest

DIM = 64


def fake_embed(texts: list[str]) -> np.ndarray:
    out = np.zeros((len(texts), DIM), dtype=np.float32)
    for i, text in enumerate(texts):
        for word in re.findall(r"\w+", text.lower()):
            out[i, int(hashlib.md5(word.encode()).hexdigest(), 16) % DIM] += 1.0
        norm = np.linalg.norm(out[i])
        if norm:
            out[i] /= norm
    return out


@pytest.fixture
def embed():
    return fake_embed
