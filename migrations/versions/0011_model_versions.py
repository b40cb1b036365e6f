"""Model versions in the adapter registry: full fine-tuning and continued pretraining.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03

* ``finetune_jobs.method`` also allows ``full`` and ``continued_pretraining``.
* ``adapters.kind``: ``adapter`` (a peft folder, served on top of the base) or ``model`` (a
  complete model folder with all weights, served instead of the base). Existing rows are
  adapters. Both kinds share names, versions, the promoted link, the gate and the decisions
  table: a name serves whatever its promoted version is.
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE finetune_jobs DROP CONSTRAINT IF EXISTS finetune_jobs_method_check")
    op.execute("ALTER TABLE finetune_jobs ADD CONSTRAINT finetune_jobs_method_check CHECK "
               "(method IN ('lora', 'qlora', 'full', 'continued_pretraining'))")
    op.execute("ALTER TABLE adapters ADD COLUMN kind text NOT NULL DEFAULT 'adapter' "
               "CHECK (kind IN ('adapter', 'model'))")


def downgrade() -> None:
    # Model versions cannot be represented before this revision: their rows go (their folders
    # stay on disk), and so do the jobs that trained them.
    op.execute("DELETE FROM adapters WHERE kind = 'model'")
    op.execute("ALTER TABLE adapters DROP COLUMN IF EXISTS kind")
    op.execute("DELETE FROM finetune_jobs WHERE method NOT IN ('lora', 'qlora')")
    op.execute("ALTER TABLE finetune_jobs DROP CONSTRAINT IF EXISTS finetune_jobs_method_check")
    op.execute("ALTER TABLE finetune_jobs ADD CONSTRAINT finetune_jobs_method_check CHECK "
               "(method IN ('lora', 'qlora'))")
