"""The ingest worker never loads torch (issue #12): validating, normalizing and chunking need
no model; embeddings are the embedder's. Checked in a fresh interpreter, since this test
process may have torch already."""

from __future__ import annotations

from pathlib import Path

from tests.support.lean import heavy_modules_after, import_all, offline_env


def test_every_ingest_module_imports_without_torch(tmp_path: Path) -> None:
    env = offline_env(tmp_path, "ingest")
    assert heavy_modules_after(import_all("services.ingest"), env) == []


def test_normalizing_and_chunking_need_no_torch(tmp_path: Path) -> None:
    code = """
from services.ingest.chunking import chunk_blocks
from services.ingest.normalize import normalize

doc = "# Leave\\n\\n" + "\\n\\n".join(f"Paragraph {i}: staff accrue leave monthly." * 5
                                     for i in range(20))
for content_type in ("text/markdown", "text/plain", "text/html"):
    assert chunk_blocks(normalize(doc, content_type))
"""
    assert heavy_modules_after(code, offline_env(tmp_path, "ingest")) == []
