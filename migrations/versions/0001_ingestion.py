"""Documents, chunks with embeddings, embedding cache and ingestion status.

Revision ID: 0001
Revises:
Create Date: 2026-11-26

Governance fields and status live on `documents` / `ingestion_status`, not on `chunks`: ACLs and
states change often, and updating a row of the embedding table would write a new heap tuple and
a new HNSW entry for nothing.
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS vector")
    op.execute(
        """
        CREATE TABLE documents (
            doc_id        text PRIMARY KEY,
            version       bigint NOT NULL,
            content_hash  text,
            content_type  text,
            title         text,
            source        text,
            uri           text,
            license       text,
            privacy_class text NOT NULL DEFAULT 'internal',
            acl           text[] NOT NULL DEFAULT '{}',
            lineage       jsonb NOT NULL DEFAULT '{}'::jsonb,
            metadata      jsonb NOT NULL DEFAULT '{}'::jsonb,
            deleted       boolean NOT NULL DEFAULT false,
            chunk_count   integer NOT NULL DEFAULT 0,
            created_at    timestamptz NOT NULL DEFAULT now(),
            updated_at    timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute("CREATE INDEX documents_acl_idx ON documents USING gin (acl)")
    op.execute("CREATE INDEX documents_privacy_idx ON documents (privacy_class)")
    op.execute(
        """
        CREATE TABLE chunks (
            chunk_id      text PRIMARY KEY,
            doc_id        text NOT NULL REFERENCES documents (doc_id) ON DELETE CASCADE,
            ordinal       integer NOT NULL,
            content_hash  text NOT NULL,
            text          text NOT NULL,
            word_count    integer NOT NULL,
            heading_path  text[] NOT NULL DEFAULT '{}',
            model_id      text NOT NULL,
            embedding     vector(384) NOT NULL,
            tsv           tsvector GENERATED ALWAYS AS (to_tsvector('english', text)) STORED,
            created_at    timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute("CREATE INDEX chunks_doc_idx ON chunks (doc_id)")
    op.execute("CREATE INDEX chunks_hash_idx ON chunks (content_hash)")
    op.execute(
        "CREATE INDEX chunks_embedding_hnsw ON chunks "
        "USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64)"
    )
    op.execute("CREATE INDEX chunks_tsv_idx ON chunks USING gin (tsv)")
    op.execute(
        """
        CREATE TABLE embedding_cache (
            content_hash  text NOT NULL,
            model_id      text NOT NULL,
            embedding     vector(384) NOT NULL,
            created_at    timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (content_hash, model_id)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE ingestion_status (
            doc_id            text PRIMARY KEY,
            last_version      bigint,
            state             text NOT NULL,
            chunks_total      integer NOT NULL DEFAULT 0,
            chunks_embedded   integer NOT NULL DEFAULT 0,
            chunks_reused     integer NOT NULL DEFAULT 0,
            chunks_removed    integer NOT NULL DEFAULT 0,
            stale_events      integer NOT NULL DEFAULT 0,
            error             text,
            event_time        timestamptz,
            indexed_at        timestamptz,
            lag_ms            double precision,
            updated_at        timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute("CREATE INDEX ingestion_status_state_idx ON ingestion_status (state)")


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS ingestion_status")
    op.execute("DROP TABLE IF EXISTS embedding_cache")
    op.execute("DROP TABLE IF EXISTS chunks")
    op.execute("DROP TABLE IF EXISTS documents")
