"""DOCX → heading / paragraph / list / table blocks, with python-docx, in document order.

Word has no fixed pages (pagination depends on the renderer), so a DOCX chunk is located by its
section instead: heading styles ("Heading 1".."Heading 9", "Title") become heading blocks, the
chunker keeps them in ``heading_path`` and citations show the section.
"""

from __future__ import annotations

import io
import re
import zipfile

from services.ingest.normalize import Block, BlockKind, _flat
from services.ingest.parsers import ParsedDocument, UnreadableDocument

_HEADING = re.compile(r"^heading\s*(\d)$", re.IGNORECASE)
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # encrypted OOXML and legacy .doc use OLE


def _style_kind(style_name: str) -> tuple[BlockKind, int]:
    name = style_name.strip()
    match = _HEADING.match(name)
    if match:
        return "heading", int(match.group(1))
    if name.lower() == "title":
        return "heading", 1
    if name.lower().startswith("list"):
        return "list_item", 0
    return "paragraph", 0


def _open(data: bytes):  # noqa: ANN202 - python-docx Document, imported lazily
    import docx
    from docx.opc.exceptions import PackageNotFoundError

    if data.startswith(_OLE_MAGIC):
        raise UnreadableDocument(
            "unsupported_content", "encrypted (password-protected) Word file or legacy .doc: "
            "save an unencrypted .docx and publish that")
    try:
        return docx.Document(io.BytesIO(data))
    except (zipfile.BadZipFile, PackageNotFoundError, KeyError, ValueError, OSError) as exc:
        raise UnreadableDocument("undecodable",
                                 f"corrupt or truncated DOCX: {type(exc).__name__}: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - lxml raises its own XMLSyntaxError family
        raise UnreadableDocument("undecodable",
                                 f"corrupt DOCX content: {type(exc).__name__}: {exc}") from exc


def parse_docx(data: bytes) -> ParsedDocument:
    """Body paragraphs and tables in order; empty paragraphs (spacing) are dropped."""
    from docx.table import Table

    document = _open(data)
    blocks: list[Block] = []
    for item in document.iter_inner_content():
        if isinstance(item, Table):
            rows = [" | ".join(_flat(cell.text) for cell in row.cells) for row in item.rows]
            text = "\n".join(row for row in rows if row.strip(" |"))
            if text:
                blocks.append(Block(text, "table"))
            continue
        text = _flat(item.text)
        if not text:
            continue
        kind, level = _style_kind(item.style.name if item.style is not None else "")
        blocks.append(Block(text, kind, level))
    return ParsedDocument(blocks=blocks)
