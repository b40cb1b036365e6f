"""Guardrails: the known-attack corpus (pgvector) and injection marks on chunks.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26

* ``guardrail_attacks``: known prompt-injection / jailbreak phrasings with their MiniLM
  embedding. The input stage compares a question with its nearest neighbours here; the corpus
  grows when an operator confirms an attack (``customllm guardrails attacks add``), and
  ``confirmed_by`` / ``source`` say who added what, for the audit trail. One row per text
  (unique on the hash of the normalized text), so re-importing a file adds nothing twice.
  Seeding from the packaged seed file happens on first use, not here: a migration must not
  load an embedding model.
* ``chunks.injection_score``: the ingest-time scan's score for indirect prompt injection in a
  document chunk; NULL means "not scanned" (chunks written before this migration), which the
  retrieval policy treats differently from 0.
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE guardrail_attacks (
            attack_id     bigserial PRIMARY KEY,
            text          text NOT NULL,
            text_hash     text NOT NULL UNIQUE,
            lang          text,
            source        text NOT NULL DEFAULT 'seed',
            confirmed_by  text,
            created_at    timestamptz NOT NULL DEFAULT now(),
            embedding     vector(384) NOT NULL
        )
        """
    )
    op.execute(
        "CREATE INDEX guardrail_attacks_embedding_hnsw ON guardrail_attacks "
        "USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64)"
    )
    op.execute("CREATE INDEX guardrail_attacks_source_idx ON guardrail_attacks (source)")
    op.execute("ALTER TABLE chunks ADD COLUMN injection_score real")


def downgrade() -> None:
    op.execute("ALTER TABLE chunks DROP COLUMN IF EXISTS injection_score")
    op.execute("DROP TABLE IF EXISTS guardrail_attacks")
