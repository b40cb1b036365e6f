"""Chunks remember the pages of a paged source (PDF) their text comes from.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02

Citations of a PDF must say where to look (``handbook.pdf p. 12``). The page is kept beside the
text, not in it: chunk identity is the hash of the text, so a page inserted before a chunk
renumbers it (an in-place update of these columns) without re-embedding it. NULL for sources
without pages (text, Markdown, HTML, DOCX).
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE chunks ADD COLUMN page_start integer, ADD COLUMN page_end integer")
    op.execute("ALTER TABLE chunks ADD CONSTRAINT chunks_pages_ck CHECK "
               "(page_start IS NULL OR (page_start >= 1 AND page_end >= page_start))")


def downgrade() -> None:
    op.execute("ALTER TABLE chunks DROP CONSTRAINT IF EXISTS chunks_pages_ck")
    op.execute("ALTER TABLE chunks DROP COLUMN IF EXISTS page_end, "
               "DROP COLUMN IF EXISTS page_start")
