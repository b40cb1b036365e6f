"""Answer cache: exact and semantic, scoped by access, adapter, template and model.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26

An entry remembers the versions of the documents its answer was built from; a lookup only
returns it while those versions are still current, and docs.status events delete entries of
changed documents, so an edit is never answered from a stale cache.
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE answer_cache (
            cache_key          text PRIMARY KEY,
            context_key        text NOT NULL,
            question           text NOT NULL,
            question_embedding vector(384) NOT NULL,
            reply              jsonb NOT NULL,
            doc_versions       jsonb NOT NULL DEFAULT '{}'::jsonb,
            doc_ids            text[] NOT NULL DEFAULT '{}',
            hits               integer NOT NULL DEFAULT 0,
            created_at         timestamptz NOT NULL DEFAULT now(),
            expires_at         timestamptz NOT NULL
        )
        """
    )
    op.execute("CREATE INDEX answer_cache_context_idx ON answer_cache (context_key)")
    op.execute("CREATE INDEX answer_cache_docs_idx ON answer_cache USING gin (doc_ids)")
    op.execute(
        "CREATE INDEX answer_cache_question_hnsw ON answer_cache "
        "USING hnsw (question_embedding vector_cosine_ops)"
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS answer_cache")
