"""Drop ``chunks_embedding_hnsw``: written on every chunk, read by nothing since 0010.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06

Since the versioned index (0010) every vector query reads ``chunk_embeddings`` through its
partial HNSW index per model; ``chunks.embedding`` is still written (the trigger mirrors it into
``chunk_embeddings``), but its own HNSW index is consulted by no query. It still cost an HNSW
insertion per chunk written, the dearest step of storing one, besides its pages on disk and in
shared buffers. The retrieval benchmarks already dropped it (``benchmarks/retrieval_speed.py``).
Downgrade builds it again (on a large table that takes a while: it is a full HNSW build).
"""

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("DROP INDEX IF EXISTS chunks_embedding_hnsw")


def downgrade() -> None:
    op.execute(
        "CREATE INDEX IF NOT EXISTS chunks_embedding_hnsw ON chunks "
        "USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64)")
