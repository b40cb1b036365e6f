"""Announce every change to ``guardrail_attacks``; drop its HNSW index, which nothing reads.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06

The input stage now searches an in-memory copy of the known-attack corpus
(``services/guardrails/attack_snapshot.py``): a few hundred rows, searched exactly by a matrix
product instead of a round trip per question. Each screening process listens on ``CHANNEL``;
this statement-level trigger notifies it at the commit of any insert, update, delete or
truncate, from whichever process made it, so the copy is re-read before the next check. The
HNSW index served the SQL search only (approximate, and filtered on the encoder after the
fact); downgrade builds it again.
"""

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

CHANNEL = "guardrail_attacks"  # services.guardrails.attack_snapshot.CHANNEL


def upgrade() -> None:
    op.execute(f"""
        CREATE OR REPLACE FUNCTION guardrail_attacks_changed() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('{CHANNEL}', TG_OP);
            RETURN NULL;
        END $$
    """)
    op.execute("CREATE TRIGGER guardrail_attacks_changed "
               "AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON guardrail_attacks "
               "FOR EACH STATEMENT EXECUTE FUNCTION guardrail_attacks_changed()")
    op.execute("DROP INDEX IF EXISTS guardrail_attacks_embedding_hnsw")


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS guardrail_attacks_changed ON guardrail_attacks")
    op.execute("DROP FUNCTION IF EXISTS guardrail_attacks_changed()")
    op.execute(
        "CREATE INDEX IF NOT EXISTS guardrail_attacks_embedding_hnsw ON guardrail_attacks "
        "USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64)")
