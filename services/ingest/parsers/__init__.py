"""Binary document formats (PDF, DOCX) → the same structural blocks as text formats.

Parsing yields :class:`~services.ingest.normalize.Block` lists, so chunking, hashing and the
"re-embed only what changed" property are shared with text documents; PDF blocks also carry
their page so citations can say ``handbook.pdf p. 12``.

Failures are split by what an operator must do about them:

* :class:`UnreadableDocument`: the bytes are not a document we can open (corrupt, truncated,
  encrypted). The event goes to the DLQ with the reason; nothing stored changes.
* :class:`NoTextLayer`: a valid PDF whose pages hold only images (a scan). Not a poison message
  but not an empty document either: the status says "no text layer" so someone runs OCR.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from services.ingest.normalize import Block

PDF = "application/pdf"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
BINARY_TYPES = (PDF, DOCX)


class UnreadableDocument(ValueError):
    """The bytes cannot be opened as the declared format; ``error_type`` names the DLQ class."""

    def __init__(self, error_type: str, reason: str) -> None:
        super().__init__(reason)
        self.error_type = error_type
        self.reason = reason


class NoTextLayer(ValueError):
    """A PDF with pages but no extractable text (scanned images): needs OCR first."""

    def __init__(self, pages: int) -> None:
        super().__init__(f"no text layer: none of the {pages} page(s) holds extractable text "
                         "(a scanned PDF?); run OCR and publish the result")
        self.pages = pages


@dataclass(frozen=True)
class ParsedDocument:
    blocks: list[Block]
    pages: int | None = None  # None: the format has no fixed pages (DOCX)
    pages_without_text: list[int] = field(default_factory=list)


def is_binary(content_type: str) -> bool:
    return content_type in BINARY_TYPES


def parse(data: bytes, content_type: str) -> ParsedDocument:
    """Dispatch on the declared content type; the parsers import their libraries lazily so a
    text-only worker does not pay for them."""
    if content_type == PDF:
        from services.ingest.parsers.pdf import parse_pdf

        return parse_pdf(data)
    if content_type == DOCX:
        from services.ingest.parsers.docx import parse_docx

        return parse_docx(data)
    raise UnreadableDocument("unsupported_content", f"no parser for {content_type!r}")
