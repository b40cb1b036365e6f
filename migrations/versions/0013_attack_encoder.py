"""The known-attack corpus records which encoder embedded each attack.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05

``guardrail_attacks.encoder``: the model id whose vector ``embedding`` holds. The input stage
compares a question's vectors with these, so both must come from one model: the shipped
encoders are all 384-dimensional, and a vector of another model fits the column and returns
meaningless similarities without any error (the command line used to embed confirmed attacks
with the retrieval index's encoder, the stage queries with the guardrails' own). NULL: embedded
before encoders were recorded; the stage re-embeds such rows, and rows of any other encoder,
with its own encoder on first use (``attack_corpus.ensure_seeded``).
"""

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE guardrail_attacks ADD COLUMN IF NOT EXISTS encoder text")


def downgrade() -> None:
    op.execute("ALTER TABLE guardrail_attacks DROP COLUMN IF EXISTS encoder")
