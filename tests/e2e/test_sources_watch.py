"""`customllm watch` on the real stack: initial scan, a restart that publishes nothing, a save
burst published once, a deleted file leaving retrieval, a sidecar edit as an acl event."""

from __future__ import annotations

import threading
import time

import pytest
import yaml
from sqlalchemy import create_engine

from services.cli.watch_cmd import Watcher
from services.common.config import get_settings
from services.rag.access import scope_for
from services.rag.retrieval import retrieve
from tests.support.documents import paragraphs, unique_prefix
from tests.support.office_docs import make_pdf, page_paragraphs
from tests.support.stack import wait_for

pytestmark = pytest.mark.e2e


def _hits(stack, tag: str) -> list:
    engine = create_engine(stack.settings.sqlalchemy_url)
    try:
        return retrieve(engine, None, tag, scope_for("u", ("group:x",), "restricted"), 3,
                        mode="lexical")
    finally:
        engine.dispose()


def _watcher(folder, prefix, manifest) -> Watcher:
    return Watcher(folder, get_settings(), defaults={"source": None}, id_prefix=prefix,
                   manifest=manifest, debounce_s=0.3)


def test_watcher_publishes_changes_once_and_nothing_after_a_restart(stack, workers, tmp_path):
    prefix = unique_prefix("watch")
    folder, manifest = tmp_path / "kb", tmp_path / "manifest.json"
    folder.mkdir()
    (folder / ".customllm.yaml").write_text(yaml.safe_dump({"source": "tests"}))
    docs = {name: paragraphs(500 + i, 3) for i, name in enumerate(("a.md", "b.md", "c.md"))}
    for name, paras in docs.items():
        (folder / name).write_text("\n\n".join(paras))
    (folder / "sub").mkdir()
    (folder / "sub" / "manual.pdf").write_bytes(make_pdf(page_paragraphs(510, 2)))
    ids = {name: prefix + name for name in ("a.md", "b.md", "c.md", "sub/manual.pdf")}

    first = _watcher(folder, prefix, manifest)
    first.initial_scan(show_progress=False)
    assert first.result.published == {"upsert": 4, "acl": 0, "delete": 0}
    wait_for(lambda: len(stack.indexed_versions(list(ids.values()))) == 4, 120,
             what="the initial scan indexed")
    versions = dict(stack.query("SELECT doc_id, version FROM documents WHERE doc_id LIKE :p",
                                p=prefix + "%"))

    restarted = _watcher(folder, prefix, manifest)
    restarted.initial_scan(show_progress=False)
    assert restarted.result.published == {"upsert": 0, "acl": 0, "delete": 0}

    stop = threading.Event()
    live = _watcher(folder, prefix, manifest)
    thread = threading.Thread(target=live.run, args=(stop,), daemon=True)
    thread.start()
    time.sleep(0.5)  # the observer is scheduled
    try:
        # An editor's save burst: three writes in quick succession, published once.
        edited = docs["a.md"][:2] + paragraphs(520, 1)
        tag = edited[-1].split("]")[0].lstrip("[")
        for i in range(3):
            (folder / "a.md").write_text("\n\n".join(edited[: 1 + i] if i < 2 else edited))
            time.sleep(0.05)
        saved = time.perf_counter()
        wait_for(lambda: any(h.doc_id == ids["a.md"] for h in _hits(stack, tag)), 60,
                 interval_s=0.05, what="the edit to be queryable")
        freshness = time.perf_counter() - saved
        assert live.result.published["upsert"] == 1

        # A deleted file leaves retrieval.
        b_tag = docs["b.md"][0].split("]")[0].lstrip("[")
        assert _hits(stack, b_tag)
        (folder / "b.md").unlink()
        wait_for(lambda: not _hits(stack, b_tag), 60, what="the deleted file to leave")
        assert stack.query("SELECT deleted FROM documents WHERE doc_id = :d",
                           d=ids["b.md"])[0][0] is True

        # A sidecar changing only the ACL is an acl event: nothing re-embedded.
        (folder / "c.md.meta.yaml").write_text(yaml.safe_dump({"acl": ["group:x"]}))
        wait_for(lambda: stack.query("SELECT acl FROM documents WHERE doc_id = :d",
                                     d=ids["c.md"])[0][0] == ["group:x"], 60,
                 what="the acl change")
        assert live.result.published == {"upsert": 1, "acl": 1, "delete": 1}
        stack.wait_indexed({ids["c.md"]: versions[ids["c.md"]] + 1})
        assert stack.status(ids["c.md"]).chunks_embedded == 0
    finally:
        stop.set()
        thread.join(timeout=10)
    print(f"watch: save to queryable {freshness * 1000:.0f} ms")  # noqa: T201 - docs figure

    again = _watcher(folder, prefix, manifest)
    again.initial_scan(show_progress=False)
    assert again.result.published == {"upsert": 0, "acl": 0, "delete": 0}
