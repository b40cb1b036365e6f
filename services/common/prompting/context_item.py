"""The numbered source a prompt cites.

It lives in the prompting library, not in the rag service, because the same items are rendered
by the fine-tuning data builders and the evaluation harness, which must produce exactly the
prompt the rag worker produces.
"""

from __future__ import annotations

from dataclasses import dataclass

# Between the chunks of one item: neighbouring chunks of a document merge into one item (the rag
# worker's context builder), and the output stage recognizes such an item's text by it.
CHUNK_JOINER = "\n\n"


@dataclass(frozen=True)
class ContextItem:
    """One citable source in the prompt: ``[n] title (uri)`` followed by ``text``."""

    n: int  # 1-based citation number
    chunk_ids: tuple[str, ...]
    doc_id: str
    title: str | None
    uri: str | None
    text: str
    score: float
    fenced: bool = False  # holds a chunk the ingest scan marked; rendered as untrusted
