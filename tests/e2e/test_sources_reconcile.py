"""`customllm reconcile` on the real stack: a folder is published, drift of every kind is
planted (a lost event, an edit never published, a file removed, a corrupt PDF), reconcile finds
exactly that drift and `--apply` fixes it."""

from __future__ import annotations

import pytest
import yaml
from sqlalchemy import create_engine
from typer.testing import CliRunner

from services.cli.main import app
from services.ingest.reconcile import compare, file_hash, load_indexed
from tests.support.documents import paragraphs, unique_prefix
from tests.support.office_docs import make_pdf, page_paragraphs
from tests.support.stack import wait_for

pytestmark = pytest.mark.e2e


def _drift(stack, folder, prefix):
    engine = create_engine(stack.settings.sqlalchemy_url)
    try:
        source = {prefix + p.relative_to(folder).as_posix(): file_hash(p)
                  for p in sorted(folder.rglob("*")) if p.suffix in (".md", ".pdf")}
        return compare(source, load_indexed(engine, id_prefix=prefix, source="tests"))
    finally:
        engine.dispose()


def test_reconcile_finds_and_fixes_a_planted_drift(stack, workers, tmp_path):
    prefix = unique_prefix("recon")
    folder = tmp_path / "kb"
    folder.mkdir()
    (folder / ".customllm.yaml").write_text(yaml.safe_dump({"source": "tests"}))
    for i in range(6):
        (folder / f"doc{i}.md").write_text("\n\n".join(paragraphs(300 + i, 3)))
    (folder / "manual.pdf").write_bytes(make_pdf(page_paragraphs(310, 2)))
    runner = CliRunner()
    result = runner.invoke(app, ["publish", str(folder), "--id-prefix", prefix])
    assert result.exit_code == 0, result.output
    ids = [prefix + name for name in ("doc0.md", "doc1.md", "doc2.md", "doc3.md", "doc4.md",
                                      "doc5.md", "manual.pdf")]
    wait_for(lambda: len(stack.indexed_versions(ids)) == 7, 180, what="the folder indexed")
    assert _drift(stack, folder, prefix).drifted == 0

    # Planted drift: an event lost (the index lost doc1), an edit never published (doc2),
    # a file deleted while nobody watched (doc3), and a corrupt PDF that was dead-lettered.
    with stack.engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM documents WHERE doc_id = %s", (prefix + "doc1.md",))
    (folder / "doc2.md").write_text("\n\n".join(paragraphs(400, 3)))
    (folder / "doc3.md").unlink()
    (folder / "broken.pdf").write_bytes(b"%PDF-1.7\n1 0 obj <<>> endobj\n% truncated")
    result = runner.invoke(app, ["publish", str(folder / "broken.pdf"), "--id-prefix", prefix])
    assert result.exit_code == 0, result.output
    wait_for(lambda: getattr(stack.status(prefix + "broken.pdf"), "state", None) == "failed",
             60, what="the corrupt PDF to fail")

    drift = _drift(stack, folder, prefix)
    assert drift.missing == [prefix + "doc1.md"]
    assert drift.stale == [prefix + "doc2.md"]
    assert drift.orphaned == [prefix + "doc3.md"]
    assert drift.failed == [prefix + "broken.pdf"]
    assert "corrupt" in drift.reasons[prefix + "broken.pdf"]
    assert round(drift.percent, 1) == round(100 * 4 / 8, 1)

    report = runner.invoke(app, ["reconcile", str(folder), "--id-prefix", prefix])
    assert report.exit_code == 0, report.output
    assert "4 of 8 document(s), 50.0%" in report.output

    # The corrupt file is replaced by a good one; --apply publishes the four fixes.
    (folder / "broken.pdf").write_bytes(make_pdf(page_paragraphs(311, 1)))
    fixed = runner.invoke(app, ["reconcile", str(folder), "--id-prefix", prefix, "--apply"])
    assert fixed.exit_code == 0, fixed.output
    assert "published 4 fix event(s)" in fixed.output
    wait_for(lambda: _drift(stack, folder, prefix).drifted == 0, 180, interval_s=1,
             what="the drift to be fixed")
    assert stack.query("SELECT deleted FROM documents WHERE doc_id = :d",
                       d=prefix + "doc3.md")[0][0] is True
