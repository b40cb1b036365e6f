"""The learned half of the ingest scan: the guardrails' injection head read on each chunk's own
vector, beside the rules the ingest worker already ran.

Why here: the embedder holds every chunk's vector anyway, so the head costs a dot product per
chunk and no encoding. It reads the vector of the whole chunk, at a threshold calibrated for
documents (``document_threshold``, ``services.guardrails.build_heads``: 1% of ordinary
paragraphs of the calibration articles), not the question threshold. With attack sources held
out it caught 2 to 6 points more inserted attacks than the rules alone, at 1-2% false marks on
paragraphs of unseen articles (docs/benchmarks/experiments/ingest_scan_head.md); reading each
sentence on its own catches more but costs 1.7x the chunks' tokens in extra encoding, so it is
not done here. Marked chunks are fenced by the packaged policy (``marked_chunks: fence``), not
dropped, so a false mark costs a warning around a passage, not a lost answer.

The head is the one the input stage uses: ``customllm guardrails train`` output in the state
folder, else the one the guardrails service ships; ``CUSTOMLLM_EMBED_INJECTION_HEAD`` names
another file, or ``off``. A head trained on another encoder than the index's, or without a
document threshold, is not used (logged once), and the rules' scores stand.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from services.common.embeddings import canonical_model_id
from services.common.events import ChunkWork
from services.common.linear_head import (
    DOCUMENT_THRESHOLD,
    INJECTION_HEAD_FILE,
    HeadError,
    LinearHead,
    head_path,
    load,
    load_cached,
)
from services.common.logs import log

logger = logging.getLogger(__name__)

# The guardrails service's shipped head (a data file, read, not imported).
PACKAGED_HEAD = Path(__file__).parents[1] / "guardrails" / "models" / "injection_head.json"
# The packaged policy's ``injection_scan`` threshold: a chunk the head marks scores at least
# this, so it is marked under that policy whichever layer saw it.
SCAN_MARK = 0.5


def head_file(setting: str, state_dir: Path) -> Path | None:
    """Which head the scan reads (None: ``off``): the input stage's own choice
    (``linear_head.head_path``), a named file first."""
    if setting.strip().lower() == "off":
        return None
    return head_path(setting.strip() or None, state_dir, INJECTION_HEAD_FILE, PACKAGED_HEAD)


# Per (head file, index encoder): what was last read there (the head, or why none could be)
# and the head the scan uses for it, so a version of the file is judged, and logged, once.
_judged: dict[tuple[Path, str], tuple[LinearHead | str | None, LinearHead | None]] = {}


def scan_head(path: Path | None, model_id: str) -> LinearHead | None:
    """``load_scan_head``, read again when the file changes (``linear_head.load_cached``: a
    retrained head takes effect without a restart, as in the input stage)."""
    if path is None:
        return None
    try:
        seen: LinearHead | str | None = load_cached(path)
    except HeadError as exc:
        seen = str(exc)
    judged = _judged.get((path, model_id))
    if judged is None or not (judged[0] is seen or (isinstance(seen, str) and judged[0] == seen)):
        judged = (seen, _usable(seen, path, model_id))
        _judged[(path, model_id)] = judged
    return judged[1]


def load_scan_head(path: Path, model_id: str) -> LinearHead | None:
    """The head, if it can read vectors of ``model_id`` at a document threshold."""
    try:
        seen: LinearHead | str = load(path)
    except HeadError as exc:
        seen = str(exc)
    return _usable(seen, path, model_id)


def _usable(seen: LinearHead | str | None, path: Path, model_id: str) -> LinearHead | None:
    if not isinstance(seen, LinearHead):
        log(logger, logging.WARNING, "ingest scan: rules only",
            reason=seen or f"no head file at {path}")
        return None
    trained_on = seen.meta.get("encoder")
    if trained_on is None or canonical_model_id(trained_on) != canonical_model_id(model_id):
        log(logger, logging.WARNING, "ingest scan: rules only", head=str(path),
            reason=f"head trained on {trained_on}, the index embeds with {model_id}")
        return None
    if DOCUMENT_THRESHOLD not in seen.meta:
        log(logger, logging.WARNING, "ingest scan: rules only", head=str(path),
            reason="the head has no document threshold (python -m "
                   "services.guardrails.build_heads --documents-only calibrates one)")
        return None
    return seen


def document_score(probability: float, threshold: float) -> float:
    """The head's probability on the scan's scale: below ``threshold`` it marks nothing (0);
    from it up, ``SCAN_MARK`` rising linearly to 1, so a stricter policy threshold than the
    packaged one asks the head for more than its calibrated point, never less."""
    if probability < threshold:
        return 0.0
    return SCAN_MARK + (1 - SCAN_MARK) * (probability - threshold) / max(1 - threshold, 1e-9)


def with_head_scores(work: ChunkWork, vectors: Mapping[str, np.ndarray],
                     head: LinearHead | None) -> ChunkWork:
    """``work`` with each chunk's ``injection_score`` the higher of the rules' and the head's
    (unchanged where the head marks nothing, so an unmarked chunk keeps the rules' score, or
    None when the ingest worker did not scan it)."""
    if head is None or work.op != "upsert" or not work.chunks:
        return work
    threshold = float(head.meta[DOCUMENT_THRESHOLD])
    probabilities = head.proba(np.stack([vectors[c.content_hash] for c in work.chunks]))
    chunks = []
    for chunk, probability in zip(work.chunks, probabilities, strict=True):
        score = document_score(float(probability), threshold)
        if score > (chunk.injection_score or 0.0):
            chunk = chunk.model_copy(update={"injection_score": round(score, 4)})
        chunks.append(chunk)
    return work.model_copy(update={"chunks": chunks})
