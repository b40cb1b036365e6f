"""Supervision sets: examples with lineage and review status, snapshots and data cards.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26

An example's id is the content hash of its messages, so importing the same file twice (or the
same system answer twice) adds nothing. Only approved examples reach a snapshot. A snapshot is
frozen: its examples are copied in their PII-scrubbed form, so later edits or reviews of the
source rows never change what a snapshot (and any adapter trained on it) was made from; its id
is the content hash of exactly those scrubbed examples, so the same data is the same snapshot.
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE sft_examples (
            example_id     text PRIMARY KEY,
            messages       jsonb NOT NULL,
            source         text NOT NULL,
            lineage        jsonb NOT NULL DEFAULT '{}'::jsonb,
            license        text,
            privacy_class  text NOT NULL DEFAULT 'internal'
                           CHECK (privacy_class IN ('public', 'internal', 'confidential',
                                                    'restricted')),
            review_status  text NOT NULL DEFAULT 'pending'
                           CHECK (review_status IN ('pending', 'approved', 'rejected')),
            reviewer       text,
            reviewed_at    timestamptz,
            review_note    text,
            tags           text[] NOT NULL DEFAULT '{}',
            created_at     timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute("CREATE INDEX sft_examples_status_idx ON sft_examples (review_status, created_at)")
    op.execute("CREATE INDEX sft_examples_source_idx ON sft_examples (source)")
    op.execute(
        """
        CREATE TABLE sft_snapshots (
            snapshot_id    text PRIMARY KEY,
            filter         jsonb NOT NULL DEFAULT '{}'::jsonb,
            n_examples     integer NOT NULL,
            card           jsonb NOT NULL,
            card_markdown  text NOT NULL,
            created_at     timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        """
        CREATE TABLE sft_snapshot_examples (
            snapshot_id    text NOT NULL REFERENCES sft_snapshots (snapshot_id)
                           ON DELETE CASCADE,
            position       integer NOT NULL,
            example_id     text NOT NULL,
            messages       jsonb NOT NULL,
            PRIMARY KEY (snapshot_id, position)
        )
        """
    )
    op.execute("CREATE INDEX sft_snapshot_examples_example_idx "
               "ON sft_snapshot_examples (example_id)")


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS sft_snapshot_examples")
    op.execute("DROP TABLE IF EXISTS sft_snapshots")
    op.execute("DROP TABLE IF EXISTS sft_examples")
