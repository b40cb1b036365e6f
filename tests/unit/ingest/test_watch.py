"""The watcher's decisions: what a change of content, labels or presence publishes, the
manifest that makes restarts quiet, and the debouncer that merges save bursts."""

from __future__ import annotations

import pytest

from services.ingest.watch import (
    Action,
    Debouncer,
    Entry,
    FileState,
    Manifest,
    decide,
    meta_hashes,
    plan_scan,
)

pytestmark = pytest.mark.unit

LABELS = {"source": "kb", "title": "Guide", "acl": ["g1"], "privacy_class": "internal",
          "license": None}


def _state(content="c1", **labels):
    meta, access = meta_hashes({**LABELS, **labels})
    return FileState("kb/a.md", "a.md", content, meta, access)


def _entry(state: FileState, version=1):
    return Entry(state.path, state.content_hash, state.meta_hash, state.access_hash, version)


def test_unchanged_file_publishes_nothing():
    assert decide(_state(), "kb/a.md", _entry(_state())) is None


def test_new_or_edited_file_is_an_upsert():
    assert decide(_state(), "kb/a.md", None) == Action("upsert", "kb/a.md", "a.md")
    assert decide(_state("c2"), "kb/a.md", _entry(_state())).op == "upsert"


def test_access_label_change_alone_is_an_acl_event():
    now = _state(acl=["g2"], privacy_class="confidential")
    assert decide(now, "kb/a.md", _entry(_state())).op == "acl"


def test_other_label_change_is_an_upsert_that_reuses_the_vectors():
    assert decide(_state(title="New title"), "kb/a.md", _entry(_state())).op == "upsert"
    both = _state(title="New title", acl=["g2"])
    assert decide(both, "kb/a.md", _entry(_state())).op == "upsert"


def test_gone_file_is_a_delete_only_if_it_was_published():
    assert decide(None, "kb/a.md", _entry(_state())) == Action("delete", "kb/a.md", "a.md")
    assert decide(None, "kb/a.md", None) is None


def test_scan_against_the_manifest_after_a_restart(tmp_path):
    manifest = Manifest(tmp_path / "m.json")
    kept, edited = _state(), FileState("kb/b.md", "b.md", "b1", *meta_hashes(LABELS))
    for doc_id, state in (("kb/a.md", kept), ("kb/b.md", edited)):
        manifest.record(doc_id, state, 7)
    manifest.record("kb/c.md", FileState("kb/c.md", "c.md", "x", *meta_hashes(LABELS)), 7)
    manifest.save()

    reloaded = Manifest(tmp_path / "m.json")
    assert reloaded.entries == manifest.entries
    now = {"kb/a.md": kept, "kb/b.md": FileState("kb/b.md", "b.md", "b2", *meta_hashes(LABELS))}
    assert plan_scan(now, reloaded.entries) == [Action("upsert", "kb/b.md", "b.md"),
                                                Action("delete", "kb/c.md", "c.md")]
    assert plan_scan({"kb/a.md": kept}, {"kb/a.md": reloaded.entries["kb/a.md"]}) == []


def test_debouncer_releases_a_path_once_it_is_quiet():
    debouncer = Debouncer(quiet_s=1.0)
    for t in (0.0, 0.3, 0.6, 0.9):  # an editor's save burst
        debouncer.touch("/kb/a.md", t)
    debouncer.touch("/kb/b.md", 0.2)
    assert debouncer.due(1.5) == ["/kb/b.md"]
    assert debouncer.due(1.8) == []
    assert debouncer.due(1.95) == ["/kb/a.md"]
    assert debouncer.pending() == 0
