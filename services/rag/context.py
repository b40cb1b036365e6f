"""Turn ranked chunks into the numbered context items a prompt cites.

* **Duplicates go first.** The same text (same ``content_hash``) indexed twice, e.g. a copied
  paragraph in two documents, would spend the budget twice and split citations; only its
  best-ranked copy stays.
* **Neighbours merge.** Chunks of one document with consecutive ordinals become one item (text
  in document order, every chunk id kept for citations), because a passage split by the chunker
  reads better, and cites more honestly, as one source. An item takes the rank of its best
  chunk, so rank order is kept. The rule is ``services.rag.passages``', which retrieval also
  counts ``top_k`` with, so one item is one of the passages asked for.
* **The budget is a hard stop.** Items are added in rank order until the next one would exceed
  ``token_budget``; a lower-ranked small item is not slipped in after a big one is refused, so
  the context never favours short chunks over relevant ones. The first item is always kept
  (truncated if it alone is over budget): an empty context would force a "don't know".

The budget counts item text only; titles, URIs and the template's framing are the prompt's
fixed overhead.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace

from services.common.prompting.context_item import CHUNK_JOINER, ContextItem
from services.rag import passages
from services.rag.passages import Passage
from services.rag.retrieval import RetrievedChunk

TRUNCATION_MARK = " …"


def approx_tokens(text: str) -> int:
    """Rough English token count (about 4 tokens per 3 words), model-independent on purpose."""
    return math.ceil(len(text.split()) * 4 / 3)


def fence_marked(items: Sequence[ContextItem], chunks: Sequence[RetrievedChunk],
                 threshold: float) -> list[ContextItem]:
    """Items holding a chunk whose injection score reaches ``threshold``, marked ``fenced`` (the
    guardrail policy "fence": kept as evidence, rendered as clearly untrusted data)."""
    marked = {c.chunk_id for c in chunks
              if c.injection_score is not None and c.injection_score >= threshold}
    return [replace(item, fenced=True) if marked.intersection(item.chunk_ids) else item
            for item in items]


def build_context(
    chunks: Sequence[RetrievedChunk],
    token_budget: int,
    count_tokens: Callable[[str], int] = approx_tokens,
) -> list[ContextItem]:
    """Deduplicate, merge consecutive chunks, and cut at the token budget (see module doc)."""
    groups = passages.group(passages.distinct(chunks))
    items: list[ContextItem] = []
    used = 0
    for group in groups:
        text = CHUNK_JOINER.join(c.text for c in group.chunks)
        cost = count_tokens(text)
        if used + cost > token_budget:
            if not items:
                items.append(_truncated(group, token_budget, count_tokens))
            break
        items.append(_item(len(items) + 1, group.chunks, text))
        used += cost
    return items


def _item(n: int, chunks: Sequence[RetrievedChunk], text: str) -> ContextItem:
    head = chunks[0]
    return ContextItem(n=n, chunk_ids=tuple(c.chunk_id for c in chunks), doc_id=head.doc_id,
                       title=head.title, uri=head.uri, text=text,
                       score=max(c.score for c in chunks))


def _truncated(group: Passage, token_budget: int,
               count_tokens: Callable[[str], int]) -> ContextItem:
    """The longest word prefix (plus a mark) that fits; cites only chunks it still reaches."""
    parts = [c.text.split() for c in group.chunks]
    low, high = 0, sum(len(part) for part in parts)
    while low < high:  # largest prefix length whose text fits the budget
        mid = (low + high + 1) // 2
        if count_tokens(_prefix(parts, mid)) <= token_budget:
            low = mid
        else:
            high = mid - 1
    kept = max(low, 1)  # never an empty item, even under an absurd budget
    reached = [c for c, start in zip(group.chunks, _starts(parts), strict=True)
               if start < kept or c is group.chunks[0]]
    return _item(1, reached, _prefix(parts, kept))


def _starts(parts: Sequence[Sequence[str]]) -> list[int]:
    """Word offset at which each part begins in the merged text."""
    offsets, total = [], 0
    for part in parts:
        offsets.append(total)
        total += len(part)
    return offsets


def _prefix(parts: Sequence[Sequence[str]], words: int) -> str:
    """The first ``words`` words, paragraph breaks between chunks kept, plus the mark."""
    texts, left = [], words
    for part in parts:
        if left <= 0:
            break
        texts.append(" ".join(part[:left]))
        left -= len(part)
    return CHUNK_JOINER.join(texts) + TRUNCATION_MARK
