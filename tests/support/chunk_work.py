"""Embedder work items for unit tests: a document's chunk texts as the ingest worker sends them."""

from __future__ import annotations

import hashlib

from services.common.events import ChunkWork, DocumentInfo, WorkChunk


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def work(doc_id: str, texts: list[str], op: str = "upsert") -> ChunkWork:
    chunks = [WorkChunk(chunk_id=f"{doc_id}-{i}", ordinal=i, content_hash=sha(t), text=t,
                        word_count=len(t.split()), embed=True) for i, t in enumerate(texts)]
    return ChunkWork(doc_id=doc_id, version=1, op=op, content_hash=sha("|".join(texts)),
                     document=DocumentInfo(), chunks=chunks)
