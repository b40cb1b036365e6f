"""Deterministic synthetic documents for ingestion tests."""

from __future__ import annotations

import random
import uuid

from services.common.events import DocChange
from services.ingest.chunking import ChunkingConfig, chunk_document

WORDS = [
    "retrieval", "grounded", "answer", "policy", "adapter", "privacy", "lineage", "vector",
    "index", "kafka", "event", "stream", "offset", "partition", "schema", "embedding", "chunk",
    "token", "model", "tenant", "steward", "audit", "citation", "governance", "latency",
    "replica", "broker", "cluster", "query", "budget",
]


def paragraph(rng: random.Random, words: int = 60) -> str:
    # A unique tag keeps paragraphs distinct so no two chunks share a hash by accident.
    return f"[{rng.getrandbits(48):x}] " + " ".join(rng.choice(WORDS) for _ in range(words))


def paragraphs(seed: int, count: int, words: int = 60) -> list[str]:
    rng = random.Random(seed)
    return [paragraph(rng, words) for _ in range(count)]


def unique_prefix(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}/"


def change(doc_id: str, version: int, paras: list[str], **extra: object) -> DocChange:
    return DocChange(doc_id=doc_id, version=version, op="upsert", content="\n\n".join(paras),
                     title=doc_id, source="tests", **extra)


def expected_hashes(content: str, content_type: str = "text/plain") -> list[str]:
    return [c.content_hash for c in chunk_document(content, content_type, ChunkingConfig())]
