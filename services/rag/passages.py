"""Results counted as a reader sees them: passages, not chunks.

Why: the chunker splits a long paragraph into two or three chunks whose vectors sit close
together, so a chunk-level top 10 could spend three slots on one paragraph, and the context
builder merges them back into one citation anyway. A caller asking for ``top_k`` results then
got fewer citations than it asked for, and the vector mode lost paragraphs to its own
fragments (held-out hit@10 0.941 against 0.949 with one slot per paragraph). So ``top_k`` of a
retrieval-only reply counts passages (``RagSettings.retrieval_unit``): retrieval reads a deeper
chunk list and keeps its longest best-first prefix that holds ``top_k`` passages.

A passage is a run of consecutive ordinals of one document, after dropping a chunk whose exact
text (``content_hash``) ranked higher elsewhere: the same rule ``services.rag.context`` builds
its items with, so a passage here is one citation there. Keeping a prefix (not regrouping the
whole deep list) means a low-ranked neighbour never rides along with a good chunk.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from services.rag.retrieval import RetrievedChunk

DEPTH = 3  # chunks read per passage asked for: paragraphs split into more are rare


@dataclass
class Passage:
    """Consecutive chunks of one document in document order; ``rank`` is its best member's
    0-based position in the ranked list."""

    rank: int
    chunks: list[RetrievedChunk] = field(default_factory=list)

    @property
    def doc_id(self) -> str:
        return self.chunks[0].doc_id


def distinct(chunks: Sequence[RetrievedChunk]) -> list[RetrievedChunk]:
    """The ranked chunks without repeats: a chunk id or an exact text seen higher up."""
    seen_hashes: set[str] = set()
    seen_ids: set[str] = set()
    kept = []
    for chunk in chunks:
        if chunk.content_hash in seen_hashes or chunk.chunk_id in seen_ids:
            continue
        seen_hashes.add(chunk.content_hash)
        seen_ids.add(chunk.chunk_id)
        kept.append(chunk)
    return kept


def group(chunks: Sequence[RetrievedChunk]) -> list[Passage]:
    """Runs of consecutive ordinals per document, best passage first (``chunks`` best first,
    already ``distinct``)."""
    by_doc: dict[str, list[tuple[int, RetrievedChunk]]] = {}
    for rank, chunk in enumerate(chunks):
        by_doc.setdefault(chunk.doc_id, []).append((rank, chunk))
    passages: list[Passage] = []
    for members in by_doc.values():
        members.sort(key=lambda pair: pair[1].ordinal)
        current: Passage | None = None
        for rank, chunk in members:
            if current is not None and chunk.ordinal == current.chunks[-1].ordinal + 1:
                current.chunks.append(chunk)
                current.rank = min(current.rank, rank)
                continue
            current = Passage(rank=rank, chunks=[chunk])
            passages.append(current)
    passages.sort(key=lambda p: p.rank)
    return passages


def prefix(chunks: Sequence[RetrievedChunk], passages: int) -> list[RetrievedChunk]:
    """The longest best-first prefix of ``chunks`` that holds at most ``passages`` passages."""
    ordinals: dict[str, set[int]] = {}
    seen_hashes: set[str] = set()
    count = 0
    for end, chunk in enumerate(chunks):
        if chunk.content_hash in seen_hashes or chunk.ordinal in ordinals.get(chunk.doc_id, ()):
            continue  # a repeat: the context drops it, so it opens no passage
        held = ordinals.setdefault(chunk.doc_id, set())
        # A new chunk opens a passage, extends one (one neighbour) or joins two (both).
        opened = 1 - (chunk.ordinal - 1 in held) - (chunk.ordinal + 1 in held)
        if count + opened > passages:
            return list(chunks[:end])
        count += opened
        held.add(chunk.ordinal)
        seen_hashes.add(chunk.content_hash)
    return list(chunks)


def doc_ids(chunks: Sequence[RetrievedChunk]) -> list[str]:
    """Each passage's document, in the order citations take (a document twice when two of
    its passages are apart)."""
    return [p.doc_id for p in group(distinct(chunks))]
