"""Rows written straight into ``documents`` / ``chunks`` for retrieval tests (no workers)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import text

DIM = 384


@dataclass
class Doc:
    doc_id: str
    texts: list[str]
    vectors: np.ndarray | None = None  # one row per text; random unit vectors when None
    privacy_class: str = "public"
    acl: Sequence[str] = ()
    source: str | None = "tests"
    license: str | None = "CC-BY-4.0"
    metadata: dict = field(default_factory=dict)
    title: str | None = None
    uri: str | None = None
    deleted: bool = False

    def chunk_id(self, ordinal: int) -> str:
        return f"{self.doc_id}#{ordinal}"


def unit_vectors(rng: np.random.Generator, n: int) -> np.ndarray:
    vectors = rng.standard_normal((n, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def write_documents(engine, docs: Sequence[Doc], rng: np.random.Generator | None = None) -> None:
    rng = rng or np.random.default_rng(0)
    doc_rows, chunk_rows = [], []
    for doc in docs:
        vectors = doc.vectors if doc.vectors is not None else unit_vectors(rng, len(doc.texts))
        doc.vectors = vectors
        doc_rows.append({
            "doc_id": doc.doc_id, "title": doc.title or doc.doc_id, "source": doc.source,
            "uri": doc.uri or f"https://docs/{doc.doc_id}", "license": doc.license,
            "privacy_class": doc.privacy_class, "acl": list(doc.acl),
            "metadata": json.dumps(doc.metadata), "deleted": doc.deleted,
            "chunk_count": len(doc.texts)})
        for ordinal, (body, vector) in enumerate(zip(doc.texts, vectors, strict=True)):
            chunk_rows.append({
                "chunk_id": doc.chunk_id(ordinal), "doc_id": doc.doc_id, "ordinal": ordinal,
                "content_hash": hashlib.sha256(f"{doc.doc_id}:{body}".encode()).hexdigest(),
                "text": body, "word_count": len(body.split()), "embedding": vector})
    with engine.begin() as conn:
        conn.execute(text("""
            INSERT INTO documents (doc_id, version, title, source, uri, license, privacy_class,
                                   acl, metadata, deleted, chunk_count)
            VALUES (:doc_id, 1, :title, :source, :uri, :license, :privacy_class, :acl,
                    CAST(:metadata AS jsonb), :deleted, :chunk_count)
        """), doc_rows)
        conn.execute(text("""
            INSERT INTO chunks (chunk_id, doc_id, ordinal, content_hash, text, word_count,
                                model_id, embedding)
            VALUES (:chunk_id, :doc_id, :ordinal, :content_hash, :text, :word_count,
                    (SELECT model_id FROM index_models WHERE state = 'active'), :embedding)
        """), chunk_rows)
