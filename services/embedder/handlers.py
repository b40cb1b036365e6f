"""Pure batch logic: which texts to embed for a batch of work items, and who gets the credit.

Batching across documents is what makes the embedder fast (one model call for many small
documents); the cache lookup makes republishing and small edits nearly free.
"""

from __future__ import annotations

from collections.abc import Container, Sequence
from dataclasses import dataclass

from services.common.events import ChunkWork
from services.common.messages import decode_json, parse_model
from services.common.topics import CHUNKS_EMBED, spec

SCHEMA = spec(CHUNKS_EMBED).schema


def decode_work(value: bytes | None, max_bytes: int) -> ChunkWork:
    from services.common.exceptions import InvalidEvent

    if value is None:
        raise InvalidEvent("schema_violation", "chunk work cannot be a tombstone")
    return parse_model(ChunkWork, decode_json(value, max_bytes, SCHEMA))


@dataclass(frozen=True)
class EmbedPlan:
    hashes: list[str]  # unique, in first-seen order
    texts: list[str]


def plan_embeddings(works: Sequence[ChunkWork], cached: set[str]) -> EmbedPlan:
    """Every chunk hash of the batch's upserts that has no cached vector, once."""
    hashes: list[str] = []
    texts: list[str] = []
    seen = set(cached)
    for work in works:
        if work.op != "upsert":
            continue
        for chunk in work.chunks:
            if chunk.content_hash not in seen:
                seen.add(chunk.content_hash)
                hashes.append(chunk.content_hash)
                texts.append(chunk.text)
    return EmbedPlan(hashes, texts)


def credit_embedded(works: Sequence[ChunkWork], embedded: set[str]) -> list[int]:
    """Chunks embedded for each work item; a hash shared by two items counts for the first."""
    remaining = set(embedded)
    counts = []
    for work in works:
        count = 0
        for chunk in work.chunks:
            if chunk.content_hash in remaining:
                remaining.discard(chunk.content_hash)
                count += 1
        counts.append(count)
    return counts


def ready_upto(works: Sequence[ChunkWork], start: int, have: Container[str]) -> int:
    """The end of the run of documents from ``start`` that can be written now: each has a
    vector for every chunk (``have``: cached or encoded so far), or needs none (deletes, ACL
    changes, failures). It stops at the first document still waiting, so documents are
    written in their order."""
    end = start
    while end < len(works) and (works[end].op != "upsert" or all(
            c.content_hash in have for c in works[end].chunks)):
        end += 1
    return end
