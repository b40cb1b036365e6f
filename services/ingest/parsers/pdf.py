"""PDF → paragraph blocks that know their page, with pypdf.

pypdf gives each page's text as wrapped lines. Indexing those lines as they come would make a
chunk out of running headers and footers ("Handbook - page 7" differs on every page, so every
chunk would change whenever pages move) and would cut paragraphs at arbitrary line ends. So:

* lines repeated at the top or bottom of most pages (running headers/footers, with the page
  number masked) and bare page numbers are dropped;
* wrapped lines are joined back into paragraphs (a paragraph ends at a blank line, at a line
  that ends a sentence and is clearly shorter than the page's full lines, or at a sentence end
  followed by a capitalised line), with words split by a line-end hyphen re-joined;
* a paragraph never spans pages: a page break closes it, so each block has exactly one page and
  an edit on page 12 changes only page 12's blocks.
"""

from __future__ import annotations

import io
import re
from collections import Counter

from services.ingest.normalize import Block, _flat
from services.ingest.parsers import NoTextLayer, ParsedDocument, UnreadableDocument

_PAGE_NUMBER = re.compile(r"^(page\s*)?\d{1,5}(\s*(of|/)\s*\d{1,5})?$", re.IGNORECASE)
_DIGITS = re.compile(r"\d+")
_SENTENCE_END = re.compile(r"[.!?:;)\"'\u201d]$")
_EDGE_LINES = 2  # how many lines at each end of a page may be a running header/footer
_SHORT_LINE = 0.8  # a line under this share of the page's longest lines ends its paragraph


def _open(data: bytes):  # noqa: ANN202 - pypdf's PdfReader, imported lazily
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError, PdfStreamError

    if not data.lstrip()[:5].startswith(b"%PDF-"):
        raise UnreadableDocument("undecodable", "not a PDF: the %PDF- header is missing")
    try:
        reader = PdfReader(io.BytesIO(data), strict=True)
        if reader.is_encrypted and not reader.decrypt(""):
            raise UnreadableDocument(
                "unsupported_content", "encrypted PDF: it needs a password to open; publish an "
                "unencrypted copy")
        if len(reader.pages) == 0:
            raise UnreadableDocument("undecodable", "corrupt PDF: it has no pages")
    except UnreadableDocument:
        raise
    except (PdfReadError, PdfStreamError, ValueError, KeyError, OSError) as exc:
        raise UnreadableDocument("undecodable",
                                 f"corrupt or truncated PDF: {type(exc).__name__}: {exc}") from exc
    return reader


def page_texts(data: bytes) -> list[str]:
    """Each page's raw extracted text (also the naive baseline in the sources benchmark)."""
    from pypdf.errors import PdfReadError, PdfStreamError

    reader = _open(data)
    texts = []
    for number, page in enumerate(reader.pages, start=1):
        try:
            texts.append(page.extract_text() or "")
        except (PdfReadError, PdfStreamError, ValueError, KeyError, OSError) as exc:
            raise UnreadableDocument(
                "undecodable", f"corrupt PDF: page {number} cannot be read: "
                f"{type(exc).__name__}: {exc}") from exc
    return texts


def _running_lines(pages: list[list[str]]) -> set[str]:
    """Lines (digits masked) found at the edge of at least half of the pages, when there are
    at least three: that is a header or footer, not content."""
    if len(pages) < 3:
        return set()
    counts: Counter[str] = Counter()
    for lines in pages:
        edge = lines[:_EDGE_LINES] + lines[-_EDGE_LINES:]
        counts.update({_DIGITS.sub("#", line) for line in edge})
    return {line for line, n in counts.items() if n * 2 >= len(pages)}


def _starts_sentence(lines: list[str], i: int) -> bool:
    """A full-width line ending a sentence, followed by a capitalised line, may end its
    paragraph or only a sentence; splitting there costs nothing (the chunker joins blocks
    again) while joining two paragraphs would blur their boundary."""
    return i < len(lines) and lines[i][:1].isupper()


def _paragraphs(lines: list[str]) -> list[str]:
    full = sorted((len(line) for line in lines if line), reverse=True)
    typical = full[len(full) // 4] if full else 0  # the upper quartile: a full-width line
    paras: list[str] = []
    current = ""
    for i, line in enumerate(lines):
        if not line:
            if current:
                paras.append(current)
            current = ""
            continue
        if current.endswith("-") and line[:1].islower():
            current = current[:-1] + line  # "inter-\nnational" → "international"
        else:
            current = f"{current} {line}" if current else line
        if _SENTENCE_END.search(line) and (len(line) < _SHORT_LINE * typical
                                           or _starts_sentence(lines, i + 1)):
            paras.append(current)
            current = ""
    if current:
        paras.append(current)
    return paras


def _page_footer(line: str) -> bool:
    """Short documents (under three pages) have no repetition to learn footers from; a short
    line naming a page number at the page's edge ("Handbook - page 2") is still one."""
    return bool(re.search(r"\bpage\s+\d+\b", line, re.IGNORECASE)) and len(line.split()) <= 8


def _content_lines(lines: list[str], running: set[str]) -> list[str]:
    """The page's lines without headers, footers and page numbers; blank lines are kept (as
    "") because they separate paragraphs."""
    filled = [i for i, line in enumerate(lines) if line]
    drop = set()
    for rank, i in enumerate(filled):
        edge = rank < _EDGE_LINES or rank >= len(filled) - _EDGE_LINES
        if edge and (_PAGE_NUMBER.match(lines[i]) or _DIGITS.sub("#", lines[i]) in running
                     or (rank in (0, len(filled) - 1) and _page_footer(lines[i]))):
            drop.add(i)
    return [line for i, line in enumerate(lines) if i not in drop]


def parse_pdf(data: bytes) -> ParsedDocument:
    """Blocks with 1-based pages; raises UnreadableDocument or NoTextLayer."""
    pages = [[_flat(line) for line in text.splitlines()] for text in page_texts(data)]
    running = _running_lines([[line for line in lines if line] for lines in pages])
    blocks: list[Block] = []
    empty: list[int] = []
    for number, lines in enumerate(pages, start=1):
        paras = _paragraphs(_content_lines(lines, running))
        if not paras:
            empty.append(number)
        blocks += [Block(text, "paragraph", page=number) for text in paras]
    if not blocks:
        raise NoTextLayer(len(pages))
    return ParsedDocument(blocks=blocks, pages=len(pages), pages_without_text=empty)
