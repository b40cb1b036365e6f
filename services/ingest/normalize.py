"""Raw document text -> structural blocks.

Chunking must be structure-aware (headings stay with their text, cuts fall between
blocks) and stable under edits, so everything that does not change what a reader
sees (line-end style, invisible characters, whitespace runs, markup) is normalized
away here. Otherwise a cosmetic change would alter chunk hashes and trigger
needless re-embedding downstream.
"""

from __future__ import annotations

import re
import textwrap
import unicodedata
from dataclasses import dataclass
from typing import Literal

from bs4 import BeautifulSoup, NavigableString, Tag
from markdown_it import MarkdownIt
from markdown_it.token import Token

BlockKind = Literal["heading", "paragraph", "list_item", "code", "table"]


@dataclass(frozen=True)
class Block:
    text: str
    kind: BlockKind
    level: int = 0
    # 1-based page of a paged source (PDF); None for sources without pages. Kept out of the
    # text, so a page inserted before this block renumbers it without changing its hash.
    page: int | None = None


class UnsupportedContentType(ValueError):
    pass


_SUPPORTED = ("text/plain", "text/markdown", "text/html")
_ALIASES = {"text": "text/plain", "plain": "text/plain", "markdown": "text/markdown",
            "md": "text/markdown", "html": "text/html"} | {t: t for t in _SUPPORTED}
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\u200b-\u200d\ufeff\u2060]")
_WS = re.compile(r"\s+")
_DROP_TAGS = ("script", "style", "noscript", "template", "head")
_HEADINGS = {f"h{i}" for i in range(1, 7)}
_LEAF_BLOCKS = _HEADINGS | {"p", "li", "blockquote", "pre", "table"}
# A browser renders these on their own lines, so their boundaries become whitespace;
# inline tags do not ("a<b>b</b>" renders as "ab").
_BREAKING = _LEAF_BLOCKS | {
    "div", "ul", "ol", "br", "tr", "td", "th", "section", "article", "header",
    "footer", "main", "nav", "aside", "dl", "dt", "dd", "figure", "hr", "form",
}


def _clean(text: str) -> str:
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    return _CONTROL.sub("", text)


def _flat(text: str) -> str:
    return _WS.sub(" ", _clean(text)).strip()


def _code(text: str) -> str:
    """Newlines and relative indentation carry meaning in code, so only the margin goes."""
    lines = [line.rstrip() for line in textwrap.dedent(_clean(text)).split("\n")]
    return "\n".join(lines).strip("\n")


def _block(text: str, kind: BlockKind, level: int = 0) -> list[Block]:
    return [Block(text, kind, level)] if text else []


def _plain(content: str) -> list[Block]:
    paras = re.split(r"\n[ \t]*\n", content)
    return [b for para in paras for b in _block(_flat(para), "paragraph")]


def _inline(token: Token) -> str:
    """Markup is dropped but its visible text kept: link text, image alt, inline code."""
    parts: list[str] = []
    for child in token.children or []:
        if child.type in ("text", "code_inline", "image"):
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append(" ")
    return "".join(parts)


def _markdown(content: str) -> list[Block]:
    tokens = MarkdownIt("commonmark").enable("table").parse(content)
    blocks: list[Block] = []
    depth = 0
    item: list[str] = []
    rows: list[str] = []
    cells: list[str] = []
    for i, tok in enumerate(tokens):
        prev = tokens[i - 1].type if i else ""
        if tok.type == "list_item_open":
            depth += 1
        elif tok.type == "list_item_close":
            depth -= 1
            if depth == 0:  # nested items flatten into their top-level item
                blocks += _block(_flat(" ".join(item)), "list_item")
                item = []
        elif depth and tok.type in ("inline", "fence", "code_block"):
            item.append(_inline(tok) if tok.type == "inline" else tok.content)
        elif tok.type == "tr_close":
            rows.append(" | ".join(cells))
            cells = []
        elif tok.type == "table_close":
            blocks += _block("\n".join(rows), "table")
            rows = []
        elif tok.type == "inline" and prev in ("th_open", "td_open"):
            cells.append(_flat(_inline(tok)))
        elif tok.type == "inline" and prev == "heading_open":
            blocks += _block(_flat(_inline(tok)), "heading", int(tokens[i - 1].tag[1]))
        elif tok.type == "inline":
            blocks += _block(_flat(_inline(tok)), "paragraph")
        elif tok.type in ("fence", "code_block"):
            blocks += _block(_code(tok.content), "code")
        elif tok.type == "html_block":
            blocks += _html(tok.content)
    return blocks


def _text(node: Tag) -> str:
    parts: list[str] = []
    for child in node.children:
        if isinstance(child, Tag):
            inner = _text(child)
            parts.append(f" {inner} " if child.name in _BREAKING else inner)
        elif type(child) is NavigableString:  # skips comments, doctypes, CDATA
            parts.append(str(child))
    return "".join(parts)


def _html_block(tag: Tag) -> list[Block]:
    if tag.name == "pre":
        return _block(_code(tag.get_text()), "code")
    if tag.name == "table":
        rows = [" | ".join(_flat(_text(c)) for c in tr.find_all(["td", "th"]))
                for tr in tag.find_all("tr")]
        return _block("\n".join(r for r in rows if r.strip(" |")), "table")
    if tag.name in _HEADINGS:
        return _block(_flat(_text(tag)), "heading", int(tag.name[1]))
    return _block(_flat(_text(tag)), "list_item" if tag.name == "li" else "paragraph")


def _html_walk(node: Tag, out: list[Block], buf: list[str]) -> None:
    """Loose text (e.g. directly inside a div) gathers in buf until a block boundary."""
    for child in node.children:
        if not isinstance(child, Tag):
            buf.append(str(child) if type(child) is NavigableString else "")
        elif child.name == "br":
            buf.append(" ")
        elif child.name in _BREAKING:
            out.extend(_block(_flat("".join(buf)), "paragraph"))
            buf.clear()
            if child.name in _LEAF_BLOCKS:
                out.extend(_html_block(child))
            else:
                _html_walk(child, out, buf)
                out.extend(_block(_flat("".join(buf)), "paragraph"))
                buf.clear()
        else:
            _html_walk(child, out, buf)  # inline element: its text continues the run


def _html(content: str) -> list[Block]:
    soup = BeautifulSoup(content, "html.parser")
    for tag in soup.find_all(_DROP_TAGS):
        tag.decompose()
    out: list[Block] = []
    buf: list[str] = []
    _html_walk(soup, out, buf)
    return out + _block(_flat("".join(buf)), "paragraph")


def normalize(content: str, content_type: str) -> list[Block]:
    """Pure and deterministic, so equal documents always yield equal chunk hashes."""
    kind = _ALIASES.get(content_type.split(";")[0].strip().lower())
    if kind is None:
        raise UnsupportedContentType(
            f"unsupported content type {content_type!r}; supported: {', '.join(_SUPPORTED)} "
            f"(aliases: {', '.join(a for a in _ALIASES if a not in _SUPPORTED)})"
        )
    content = _clean(content)
    if kind == "text/markdown":
        return _markdown(content)
    if kind == "text/html":
        return _html(content)
    return _plain(content)
