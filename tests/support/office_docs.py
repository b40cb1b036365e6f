"""Real PDF and DOCX files generated on the fly (reportlab, python-docx) for ingest tests and
the sources benchmark: pages and paragraphs are known exactly, so chunks and citations can be
checked against them."""

from __future__ import annotations

import io
import random

from tests.support.documents import WORDS


def page_paragraphs(seed: int, pages: int, per_page: int = 3, words: int = 70
                    ) -> list[list[str]]:
    """Distinct paragraphs (a unique tag each) for every page."""
    rng = random.Random(seed)
    return [[f"P{p + 1}x{rng.getrandbits(40):x} " + " ".join(rng.choice(WORDS)
                                                            for _ in range(words)) + "."
             for _ in range(per_page)] for p in range(pages)]


def make_pdf(pages: list[list[str]], *, title: str = "Handbook", footer: bool = True,
             encrypt: str | None = None) -> bytes:
    """One page per entry; each paragraph wrapped by reportlab like a real report, with a
    running footer ("Handbook - page N") that the parser must not index."""
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.platypus import PageBreak, Paragraph, SimpleDocTemplate, Spacer

    buffer = io.BytesIO()
    kwargs = {}
    if encrypt:
        from reportlab.lib import pdfencrypt

        kwargs["encrypt"] = pdfencrypt.StandardEncryption(encrypt, canPrint=0)

    def on_page(canvas, doc) -> None:  # noqa: ANN001 - reportlab callback
        if footer:
            canvas.setFont("Helvetica", 8)
            canvas.drawString(72, 30, f"{title} - page {doc.page}")

    doc = SimpleDocTemplate(buffer, pagesize=A4, title=title, **kwargs)
    styles = getSampleStyleSheet()
    story = []
    for i, paras in enumerate(pages):
        for para in paras:
            story.append(Paragraph(para, styles["BodyText"]))
            story.append(Spacer(1, 8))
        if i < len(pages) - 1:
            story.append(PageBreak())
    doc.build(story, onFirstPage=on_page, onLaterPages=on_page)
    return buffer.getvalue()


def make_scanned_pdf(pages: int = 2) -> bytes:
    """Pages holding only a drawn image (no text operators): what a scanner produces."""
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    buffer = io.BytesIO()
    c = canvas.Canvas(buffer, pagesize=A4)
    for _ in range(pages):
        for y in range(100, 700, 12):
            c.rect(72, y, 400, 6, fill=1, stroke=0)  # "lines of text" as pixels
        c.showPage()
    c.save()
    return buffer.getvalue()


def make_docx(sections: list[tuple[str, list[str]]], *, table: list[list[str]] | None = None
              ) -> bytes:
    """Headed sections (Heading 1) of paragraphs, optionally a table after them."""
    import docx

    document = docx.Document()
    for heading, paras in sections:
        document.add_heading(heading, level=1)
        for para in paras:
            document.add_paragraph(para)
    if table:
        grid = document.add_table(rows=len(table), cols=len(table[0]))
        for r, row in enumerate(table):
            for c, cell in enumerate(row):
                grid.cell(r, c).text = cell
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()
