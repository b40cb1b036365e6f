"""Content-defined, structure-aware chunking.

Chunks are identified by the hash of their text, and a changed hash means the
chunk is re-embedded and re-indexed. Fixed word windows counted from the start of
the document would shift every boundary after an insertion near the top, so one
edited sentence would re-embed the whole document. Instead, whether a chunk ends
after a block depends only on that block's own content (its hash, or it being long
enough to stand alone), the way rsync/restic pick content-defined cut points.
After an edit the walk falls back into step with the old boundaries at the next
cut point both versions share, so only a small constant number of chunks change.

Structure: cuts only fall between blocks (or between sentences of an oversized
block), and a heading always opens a chunk, so a heading is embedded with the
text it introduces and ``heading_path`` can be shown with citations.
``min_words`` keeps hash cuts from producing fragments too small to embed well;
``max_words`` bounds chunk size for the embedding model's context.

Pages: blocks of a paged source (PDF) carry their page, and a new page always opens a chunk
(unless the pending chunk holds only headings), so every chunk's text comes from one page and an
edit of page 12 re-embeds only page 12's chunks. The page is not part of the chunk's text or
hash: inserting a page renumbers the chunks after it without re-embedding them.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from services.ingest.normalize import Block, normalize

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True)
class ChunkingConfig:
    min_words: int = 40
    max_words: int = 180
    cut_divisor: int = 3

    def __post_init__(self) -> None:
        if not 1 <= self.min_words <= self.max_words or self.cut_divisor < 1:
            raise ValueError(f"invalid chunking config: {self}")


@dataclass(frozen=True)
class Chunk:
    ordinal: int
    text: str
    content_hash: str
    word_count: int
    heading_path: tuple[str, ...]
    page_start: int | None = None
    page_end: int | None = None


@dataclass(frozen=True)
class _Unit:
    text: str
    words: int
    heading_level: int = 0  # 0: not a heading
    page: int | None = None


@dataclass
class _Pending:
    units: list[_Unit] = field(default_factory=list)
    words: int = 0
    path: tuple[str, ...] = ()

    def only_headings(self) -> bool:
        return all(u.heading_level for u in self.units)


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _units(block: Block, max_words: int) -> list[_Unit]:
    """Oversized blocks are split at sentence ends so that cuts stay meaningful."""
    words = len(block.text.split())
    if words <= max_words:
        level = max(block.level, 1) if block.kind == "heading" else 0
        return [_Unit(block.text, words, level, block.page)] if words else []
    units: list[_Unit] = []
    for sentence in _SENTENCE_END.split(block.text):
        tokens = sentence.split()
        for start in range(0, len(tokens), max_words):
            window = tokens[start : start + max_words]
            text = sentence.strip() if len(tokens) <= max_words else " ".join(window)
            units.append(_Unit(text, len(window), page=block.page))
    return units


def _is_cut_point(unit: _Unit, divisor: int) -> bool:
    return int(content_hash(unit.text), 16) % divisor == 0


def chunk_blocks(blocks: Sequence[Block], config: ChunkingConfig = ChunkingConfig()) -> list[Chunk]:
    """Deterministic: identical blocks and config always give identical chunks."""
    chunks: list[Chunk] = []
    headings: list[tuple[int, str]] = []  # (level, text) of the headings in force
    current = _Pending()

    def flush() -> None:
        nonlocal current
        if current.units:
            text = "\n\n".join(u.text for u in current.units)
            pages = [u.page for u in current.units if u.page is not None]
            chunks.append(Chunk(len(chunks), text, content_hash(text), current.words, current.path,
                                min(pages) if pages else None, max(pages) if pages else None))
        current = _Pending()

    for unit in (u for block in blocks for u in _units(block, config.max_words)):
        if unit.heading_level:
            # Consecutive headings ("# A" then "## B") share one chunk with the text
            # after them rather than producing heading-only chunks.
            if not current.only_headings():
                flush()
            headings = [h for h in headings if h[0] < unit.heading_level]
            headings.append((unit.heading_level, unit.text))
        elif current.units and current.words + unit.words > config.max_words:
            flush()
        elif (unit.page is not None and not current.only_headings()
              and current.units[-1].page != unit.page):
            flush()  # a page break closes the chunk: citations name one page
        if current.only_headings():  # the chunk starts here (or so far holds only headings)
            current.path = tuple(text for _, text in headings)
        current.units.append(unit)
        current.words += unit.words
        if unit.heading_level:
            continue
        if unit.words >= config.min_words or (
            current.words >= config.min_words and _is_cut_point(unit, config.cut_divisor)
        ):
            flush()
    flush()
    return chunks


def chunk_document(
    content: str, content_type: str, config: ChunkingConfig = ChunkingConfig()
) -> list[Chunk]:
    return chunk_blocks(normalize(content, content_type), config)
