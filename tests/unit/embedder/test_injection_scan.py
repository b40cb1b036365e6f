import json
import os

import numpy as np
import pytest

from services.common import linear_head
from services.common.events import ChunkWork, DocumentInfo, WorkChunk
from services.common.linear_head import DOCUMENT_THRESHOLD, LinearHead
from services.embedder import injection_scan
from services.embedder.injection_scan import (
    PACKAGED_HEAD,
    SCAN_MARK,
    document_score,
    head_file,
    load_scan_head,
    scan_head,
    with_head_scores,
)

pytestmark = pytest.mark.unit

MODEL = "sentence-transformers/all-MiniLM-L6-v2+onnx-int8"


def _head(threshold: float | None = 0.8, encoder: str = MODEL) -> LinearHead:
    # p = sigmoid(8 * x0 - 4): x0 = 1 -> 0.98, x0 = 0 -> 0.018
    meta = {"encoder": encoder}
    if threshold is not None:
        meta[DOCUMENT_THRESHOLD] = threshold
    return LinearHead(np.array([8.0, 0.0]), -4.0, 0.9, meta)


def _work(scores: list[float | None]) -> tuple[ChunkWork, dict[str, np.ndarray]]:
    chunks = [WorkChunk(chunk_id=f"c{i}", ordinal=i, content_hash=f"h{i}", text=f"t{i}",
                        word_count=1, injection_score=s) for i, s in enumerate(scores)]
    work = ChunkWork(doc_id="d", version=1, op="upsert", content_hash="x",
                     document=DocumentInfo(title="t", source="s"), chunks=chunks)
    return work, {}


def test_the_head_raises_a_score_only_where_it_marks_the_chunk():
    work, _ = _work([0.1, None, 0.97, None])
    vectors = {"h0": np.array([1.0, 0.0]), "h1": np.array([0.0, 1.0]),
               "h2": np.array([1.0, 0.0]), "h3": np.array([1.0, 0.0])}
    scored = [c.injection_score for c in with_head_scores(work, vectors, _head()).chunks]
    marked = document_score(1 / (1 + np.exp(-4.0)), 0.8)
    assert scored[0] == pytest.approx(marked, abs=1e-4) and scored[0] > SCAN_MARK
    assert scored[1] is None  # not scanned by the rules, not marked by the head
    assert scored[2] == 0.97  # the rules' score is higher
    assert scored[3] == scored[0]


def test_the_scale_puts_the_document_threshold_at_the_scan_mark():
    assert document_score(0.79, 0.8) == 0.0
    assert document_score(0.8, 0.8) == pytest.approx(SCAN_MARK)
    assert document_score(1.0, 0.8) == pytest.approx(1.0)
    assert document_score(0.9, 0.8) == pytest.approx(0.75)


def test_deletes_and_a_missing_head_leave_the_work_as_it_is():
    work, _ = _work([0.2])
    assert with_head_scores(work, {}, None) is work
    delete = ChunkWork(doc_id="d", version=2, op="delete")
    assert with_head_scores(delete, {}, _head()) is delete


def test_a_head_of_another_encoder_or_without_a_document_threshold_is_not_used(tmp_path):
    for name, head in {"other": _head(encoder="another/model"),
                       "uncalibrated": _head(threshold=None)}.items():
        path = linear_head.save(head, tmp_path / f"{name}.json")
        assert load_scan_head(path, MODEL) is None
    assert load_scan_head(tmp_path / "missing.json", MODEL) is None
    good = linear_head.save(_head(), tmp_path / "good.json")
    assert load_scan_head(good, MODEL) is not None


def test_the_scan_reads_the_head_the_input_stage_reads(tmp_path):
    from services.guardrails import classifier

    assert head_file("off", tmp_path) is None
    assert head_file("", tmp_path) == PACKAGED_HEAD
    assert PACKAGED_HEAD == classifier.PACKAGED_MODEL
    trained = classifier.default_model_path(tmp_path)  # where `guardrails train` writes
    linear_head.save(_head(), trained)
    assert head_file("", tmp_path) == trained
    assert head_file(str(tmp_path / "x.json"), tmp_path) == tmp_path / "x.json"


def test_a_retrained_head_file_is_read_again(tmp_path):
    path = linear_head.save(_head(0.8), tmp_path / "head.json")
    assert scan_head(path, MODEL).meta[DOCUMENT_THRESHOLD] == 0.8
    raw = json.loads(path.read_text())
    raw["meta"][DOCUMENT_THRESHOLD] = 0.6
    path.write_text(json.dumps(raw))
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert scan_head(path, MODEL).meta[DOCUMENT_THRESHOLD] == 0.6
    injection_scan._judged.clear()


def test_the_shipped_head_is_calibrated_for_documents_on_the_index_encoder():
    head = load_scan_head(PACKAGED_HEAD, MODEL)
    assert head is not None and 0.5 < head.meta[DOCUMENT_THRESHOLD] < 1.0
