"""Supervision sets: examples with lineage and review status, snapshots and data cards.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26
"""

from alembic import op  # noqa: F401

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
