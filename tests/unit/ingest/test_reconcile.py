"""Drift classification and its OpenTelemetry export (the database side is tested end to end in
tests/e2e/test_sources_reconcile.py)."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from services.ingest.reconcile import IndexedDoc, compare, file_hash, record_drift

pytestmark = pytest.mark.unit


def _doc(doc_id, version=1, content_hash="h", deleted=False, state="indexed", status_version=1,
         error=None):
    return IndexedDoc(doc_id, version, content_hash, deleted, state, status_version, error)


def test_every_kind_of_drift_is_found_and_counted():
    source = {"same": "h", "edited": "new", "never": "h", "gone-from-index": "h",
              "broken": "h2", "ids-only": None}
    indexed = {
        "same": _doc("same"),
        "edited": _doc("edited", content_hash="old"),
        "gone-from-index": _doc("gone-from-index", deleted=True, state="deleted"),
        "broken": _doc("broken", version=1, state="failed", status_version=2,
                       error="undecodable: corrupt PDF"),
        "ids-only": _doc("ids-only", content_hash="whatever"),
        "removed-file": _doc("removed-file"),
        "removed-and-deleted": _doc("removed-and-deleted", deleted=True),
    }
    drift = compare(source, indexed)
    assert drift.counts() == {"missing": 2, "stale": 1, "orphaned": 1, "failed": 1,
                              "in_sync": 2}
    assert drift.missing == ["gone-from-index", "never"]
    assert (drift.stale, drift.orphaned, drift.failed) == (["edited"], ["removed-file"],
                                                           ["broken"])
    assert drift.reasons == {"broken": "undecodable: corrupt PDF"}
    assert drift.percent == pytest.approx(100 * 5 / 7)


def test_a_failure_older_than_the_stored_version_is_not_drift():
    drift = compare({"a": "h"}, {"a": _doc("a", version=5, state="failed", status_version=4)})
    assert drift.in_sync == ["a"] and drift.percent == 0


def test_a_failed_first_version_counts_as_failed_not_missing():
    failed_only = IndexedDoc("scan.pdf", None, None, False, "failed", 3, "no text layer")
    drift = compare({"scan.pdf": "h"}, {"scan.pdf": failed_only})
    assert drift.failed == ["scan.pdf"] and drift.missing == []


def test_file_hash_is_the_sha256_ingest_stores(tmp_path):
    from services.ingest.chunking import content_hash

    path = tmp_path / "a.md"
    path.write_text("# Título\n\nText.", encoding="utf-8")
    assert file_hash(path) == content_hash(path.read_text(encoding="utf-8"))


def test_drift_is_exported_as_gauges():
    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader]).get_meter("test")
    drift = compare({"a": "h", "b": "x"}, {"a": _doc("a"), "c": _doc("c")})
    record_drift(drift, "kb", meter)
    data = reader.get_metrics_data()
    points = {(m.name, tuple(sorted(p.attributes.items()))): p.value
              for rm in data.resource_metrics for sm in rm.scope_metrics
              for m in sm.metrics for p in m.data.data_points}
    assert points[("customllm.index.drift", (("kind", "missing"), ("scope", "kb")))] == 1
    assert points[("customllm.index.drift", (("kind", "orphaned"), ("scope", "kb")))] == 1
    assert points[("customllm.index.drift_ratio", (("scope", "kb"),))] == pytest.approx(2 / 3)
