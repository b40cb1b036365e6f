"""Columns and indexes the query path filters on.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26

* ``documents.privacy_rank``: the privacy class as a number (public 0 … restricted 3; unknown
  classes count as restricted, like ``services.rag.access.privacy_rank``), generated so it can
  never drift from ``privacy_class``. Retrieval filters ``privacy_rank <= :max_rank`` instead of
  listing class names.
* Indexes for the retrieval filters on ``documents``: source, license, metadata containment
  (GIN ``jsonb_path_ops``) and doc-id prefixes (``text_pattern_ops``, since the primary key's
  collation-aware btree cannot serve ``LIKE 'prefix%'``).

All on ``documents``, none on ``chunks``: filters join the small governance table, and the
embedding table is not rewritten.
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE documents ADD COLUMN privacy_rank smallint GENERATED ALWAYS AS (
            CASE privacy_class
                WHEN 'public' THEN 0
                WHEN 'internal' THEN 1
                WHEN 'confidential' THEN 2
                ELSE 3
            END
        ) STORED
        """
    )
    op.execute("CREATE INDEX documents_privacy_rank_idx ON documents (privacy_rank)")
    op.execute("CREATE INDEX documents_source_idx ON documents (source)")
    op.execute("CREATE INDEX documents_license_idx ON documents (license)")
    op.execute(
        "CREATE INDEX documents_metadata_idx ON documents USING gin (metadata jsonb_path_ops)")
    op.execute(
        "CREATE INDEX documents_doc_id_prefix_idx ON documents (doc_id text_pattern_ops)")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS documents_doc_id_prefix_idx")
    op.execute("DROP INDEX IF EXISTS documents_metadata_idx")
    op.execute("DROP INDEX IF EXISTS documents_license_idx")
    op.execute("DROP INDEX IF EXISTS documents_source_idx")
    op.execute("DROP INDEX IF EXISTS documents_privacy_rank_idx")
    op.execute("ALTER TABLE documents DROP COLUMN IF EXISTS privacy_rank")
