"""The learned layer of prompt-injection detection: a logistic head over MiniLM embeddings.

A trained head ships inside the package (``models/injection_head.json``, data card in
``models/README.md``), so the check runs out of the box; ``customllm guardrails train --data
FILE.jsonl`` retrains it from a user's data and the state folder's copy then takes precedence.

A text is scored on several *views* of its readable form (``readable``: encoded blobs decoded
in place, homoglyphs / leetspeak / spacing undone): the whole of it (in windows of whole
sentences when it is long, so every part is read at a cost linear in its length) and each
sentence of a longer text, and the highest view counts: an attack appended
to a harmless question, or hidden in an encoding, is scored on what it says. The head is
fitted on the first view (the whole readable text); all views are applied in cross-validation
exactly as at run time, so the calibrated threshold (the lowest one holding out-of-fold false
positives at ``TARGET_FPR``) is the operating point of the scorer that actually runs.

Quality is reported as k-fold *held-out* scores (every text scored by a head that never saw
it): precision, detection rate, false-positive rate, F1 and ROC-AUC.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from services.common import linear_head
from services.common.exceptions import CustomLLMError
from services.common.linear_head import HeadError, LinearHead
from services.common.text_normalize import decoded_payloads, normalize, skeleton
from services.guardrails import head_training
from services.guardrails.attack_corpus import MAX_SEGMENTS, MIN_SEGMENT_CHARS, EmbedFn
from services.guardrails.head_training import CvReport

MODEL_FILE = linear_head.INJECTION_HEAD_FILE
PACKAGED_MODEL = Path(__file__).parent / "models" / "injection_head.json"
MIN_PER_CLASS = 4
TARGET_FPR = 0.02  # out-of-fold false positives the calibrated threshold allows
C = 3.0
WINDOW_CHARS = 600  # ~140 tokens: a view of a long text (see ``windows``)

metrics_at = head_training.metrics_at  # the benchmark and the tests read it here


class ClassifierError(CustomLLMError):
    """Training data unusable, or a model file missing or malformed."""


_BLOB = re.compile(r"[A-Za-z0-9+/_-]{16,}={0,2}|(?:[0-9A-Fa-f]{2}[ :]?){8,}")
_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s+")
# Kept out of the skeleton: its leetspeak folding would turn "jane@example.com" into a word.
_ADDRESS = re.compile(r"\S+@\S+\.\w+|https?://\S+|www\.\S+", re.IGNORECASE)


@functools.lru_cache(maxsize=32)
def readable(text: str) -> str:
    """The text as a reader takes it in: encoded blobs that decode to readable text replaced
    by that text, then the skeleton (homoglyphs, leetspeak, spaced letters undone). The head
    scores this, not the raw characters: a disguise or an opaque blob is far from anything it
    was trained on, and would score as an attack whatever it hides (the benchmark found
    benign texts in base64 flagged six times in ten before this).

    Remembered for the last few texts only (a screening asks for it four times: both heads'
    views, once to embed them in one batch and once to score them; a few screenings run at
    once), so the process holds few recent questions."""

    def inline(match: re.Match[str]) -> str:
        decoded = decoded_payloads(match.group(0))
        return f" {decoded[0].text} " if decoded else match.group(0)

    inlined = _BLOB.sub(inline, text)
    parts, start = [], 0
    for match in _ADDRESS.finditer(inlined):
        parts += [skeleton(inlined[start:match.start()]), match.group(0).lower()]
        start = match.end()
    parts.append(skeleton(inlined[start:]))
    return " ".join(p for p in parts if p)


def windows(read: str, size: int = WINDOW_CHARS) -> list[str]:
    """``read`` whole when it is at most ``size`` characters, else consecutive runs of whole
    sentences of at most ``size`` characters (a longer sentence cut at spaces) covering all of
    it. Why: the encoder reads at most 256 tokens (~1,100 characters), so the middle and end of
    a long text were never scored; windows cover every character at a cost linear in the
    length, and a short window keeps one injected sentence from being averaged away."""
    if len(read) <= size:
        return [read]
    pieces: list[str] = []
    for sentence in _SENTENCE_END.split(read):
        while len(sentence) > size:
            cut = sentence.rfind(" ", size // 2, size)
            cut = cut if cut > 0 else size
            pieces.append(sentence[:cut])
            sentence = sentence[cut:].lstrip()
        if sentence:
            pieces.append(sentence)
    out: list[str] = []
    for piece in pieces:
        if out and len(out[-1]) + 1 + len(piece) <= size:
            out[-1] = f"{out[-1]} {piece}"
        else:
            out.append(piece)
    return out


def views(text: str) -> list[str]:
    """What the head scores for one text: its readable form (in ``windows`` when long), and
    each sentence of it when there are several (the first and last two of a long text:
    injections are usually prepended or appended to an ordinary question)."""
    read = readable(normalize(text).text.strip())
    if not read:
        return []
    sentences = [s.strip() for s in _SENTENCE_END.split(read)
                 if len(s.strip()) >= MIN_SEGMENT_CHARS]
    if len(sentences) > MAX_SEGMENTS:
        half = MAX_SEGMENTS // 2
        sentences = sentences[:half] + sentences[-half:]
    return list(dict.fromkeys([*windows(read), *(sentences if len(sentences) > 1 else [])]))


def predict_proba(head: LinearHead, texts: Sequence[str], embed: EmbedFn) -> np.ndarray:
    """Probability of "injection" per text (the highest over its views)."""
    return linear_head.max_over_views(head, [views(t) for t in texts], embed)


def score(head: LinearHead, text: str, embed: EmbedFn) -> float:
    return float(predict_proba(head, [text], embed)[0])


def default_model_path(state_dir: Path) -> Path:
    return state_dir / "guardrails" / MODEL_FILE


# --- data --------------------------------------------------------------------------------------

def read_jsonl(path: Path) -> tuple[list[str], list[int]]:
    """``{"text": ..., "label": 0|1}`` per line (1 = injection; other keys are ignored). Bad
    lines are an error that names the line, not something skipped silently."""
    texts: list[str] = []
    labels: list[int] = []
    for number, row in head_training.labelled_rows(path, ClassifierError):
        try:
            text, label = row["text"], int(row["label"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ClassifierError(f"{path}:{number}: expected {{\"text\", \"label\"}}: {exc}") \
                from exc
        if label not in (0, 1) or not isinstance(text, str):
            raise ClassifierError(f"{path}:{number}: label must be 0 or 1 and text a string")
        texts.append(text)
        labels.append(label)
    return texts, labels


def _check_data(labels: Sequence[int], folds: int) -> None:
    positives = sum(labels)
    negatives = len(labels) - positives
    need = max(MIN_PER_CLASS, folds)
    if positives < need or negatives < need:
        raise ClassifierError(f"need at least {need} injections and {need} benign texts "
                              f"(got {positives} and {negatives})")


def data_hash(texts: Sequence[str], labels: Sequence[int]) -> str:
    digest = hashlib.sha256()
    for text, label in zip(texts, labels, strict=True):
        digest.update(f"{label}\t{text}\n".encode())
    return digest.hexdigest()


# --- training ----------------------------------------------------------------------------------

def cross_validate(texts: Sequence[str], labels: Sequence[int], embed: EmbedFn,
                   folds: int = 5, seed: int = 0,
                   progress: Callable[[int, int], None] | None = None) -> CvReport:
    """Held-out scores and the calibrated threshold (see ``head_training.cross_validate``)."""
    _check_data(labels, folds)
    data = head_training.embed_texts(texts, embed, views)
    return head_training.cross_validate(data, labels, folds, C, TARGET_FPR, seed, progress)


def train(texts: Sequence[str], labels: Sequence[int], embed: EmbedFn, seed: int = 0,
          folds: int = 5, sources: Sequence[str] = (),
          progress: Callable[[int, int], None] | None = None,
          encoder: str | None = None) -> tuple[LinearHead, CvReport]:
    """Cross-validate (threshold calibration and held-out quality), then fit on all the data.
    ``encoder``: the model id behind ``embed``, recorded so the stage refuses the head under
    another encoder."""
    _check_data(labels, folds)
    data = head_training.embed_texts(texts, embed, views)
    meta: dict[str, Any] = {
        "task": "prompt injection (1) vs benign (0)",
        "data_sha256": data_hash(texts, labels), "sources": list(sources),
    }
    if encoder:
        meta["encoder"] = encoder
    return head_training.train(data, labels, C, TARGET_FPR, seed, folds, meta, progress)


# --- persistence -------------------------------------------------------------------------------

def save(head: LinearHead, path: Path) -> Path:
    return linear_head.save(head, path)


def load(path: Path) -> LinearHead:
    try:
        return linear_head.load(path)
    except HeadError as exc:
        raise ClassifierError(f"{exc}; train one with `customllm guardrails train --data "
                              "FILE.jsonl`") from exc


def load_cached(path: Path) -> LinearHead | None:
    """The head at ``path`` (re-read when the file changes, so retraining needs no restart),
    or None when there is none."""
    try:
        return linear_head.load_cached(path)
    except HeadError as exc:
        raise ClassifierError(f"{exc}; train one with `customllm guardrails train --data "
                              "FILE.jsonl`") from exc
