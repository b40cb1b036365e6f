"""Pure pieces of answering: citations from [n] markers, abstention, cost."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from services.common.events import Citation, Usage

_MARKER = re.compile(r"\[(\d{1,3})\]")


def cited_numbers(answer: str, available: int) -> list[int]:
    """The [n] markers in the answer that point at a context item, first-seen order."""
    seen: list[int] = []
    for match in _MARKER.finditer(answer):
        n = int(match.group(1))
        if 1 <= n <= available and n not in seen:
            seen.append(n)
    return seen


def locator(chunks: Sequence[Any]) -> str | None:
    """Where the cited text is: "p. 12" / "pp. 12-13" for a paged source (PDF), else the
    innermost section heading ("§ Refunds"), else None. A reader checks a PDF by page."""
    pages = [p for c in chunks for p in (getattr(c, "page_start", None),
                                         getattr(c, "page_end", None)) if p is not None]
    if pages:
        first, last = min(pages), max(pages)
        return f"p. {first}" if first == last else f"pp. {first}-{last}"
    headings = [h for c in chunks[:1] for h in (getattr(c, "heading_path", ()) or ())]
    return f"§ {headings[-1]}" if headings else None


def citations_for(answer: str, items: Sequence[Any], abstained: bool,
                  chunks: Sequence[Any] = ()) -> list[Citation]:
    """Cited items when the answer names them; otherwise every item the answer was generated
    from (small models often omit markers, and the reader still needs the sources). An
    abstention cites nothing. ``chunks`` (the retrieved chunks) give each citation its
    page or section."""
    if abstained:
        return []
    numbers = cited_numbers(answer, len(items)) or [item.n for item in items]
    by_n = {item.n: item for item in items}
    by_id = {c.chunk_id: c for c in chunks}
    return [
        Citation(n=n, chunk_id=by_n[n].chunk_ids[0], chunk_ids=list(by_n[n].chunk_ids),
                 doc_id=by_n[n].doc_id, uri=by_n[n].uri, title=by_n[n].title,
                 score=float(by_n[n].score), text=by_n[n].text,
                 locator=locator([by_id[i] for i in by_n[n].chunk_ids if i in by_id]))
        for n in numbers
    ]


def should_abstain(best_similarity: float | None, min_relevance: float) -> bool:
    """Nothing visible was retrieved, or nothing close enough to be about the question."""
    return best_similarity is None or best_similarity < min_relevance


def usage_with_cost(prompt_tokens: int, completion_tokens: int, price_prompt_per_1k: float,
                    price_completion_per_1k: float) -> Usage:
    cost = (prompt_tokens * price_prompt_per_1k
            + completion_tokens * price_completion_per_1k) / 1000
    return Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                 cost_usd=round(cost, 8))
