"""PII findings of chunk texts, computed once at ingest and looked up by the output stage.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02

``chunk_pii_findings``: one row per (chunk content hash, detector version) with the detector's
findings as JSON (entity type, start and end offsets in the text, score). Keyed by the text's
hash, not by chunk id: the same paragraph in two documents is analysed once, and the row
outlives re-indexing as long as the text is unchanged. The detector version is a hash of the
detector's source, its packages' versions and the minimum score (see
``services.common.pii_findings``), so findings of an older detector are never reused.
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        CREATE TABLE IF NOT EXISTS chunk_pii_findings (
            content_hash text NOT NULL,
            detector_version text NOT NULL,
            findings jsonb NOT NULL CHECK (jsonb_typeof(findings) = 'array'),
            created_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (content_hash, detector_version)
        )
    """)


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS chunk_pii_findings")
