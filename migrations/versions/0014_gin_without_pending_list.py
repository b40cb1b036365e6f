"""The full-text and document-filter GIN indexes are written through, without a pending list.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-05

With GIN's default ``fastupdate``, inserted rows wait in an unsorted pending list until it
outgrows ``gin_pending_list_limit`` (4 MB) or a VACUUM merges it. Every scan of the index reads
that list whole, so the planner, rightly, turns to sequential scans of ``chunks`` for the
lexical query's per-term document frequencies and its match, and stays there: an index freshly
filled by ingestion (949 chunks: 245 pending pages) is under autovacuum's insert threshold (1,000
rows + 20 %) and is never merged. Measured in process on the retrieval benchmark's index, 200
held-out questions, hybrid top 10: p50 17-18 ms with the pending list, 12 ms without it, the
same rankings; loading those 949 chunks took 1.02 s written through against 0.88 s with the list.
Retrieval reads these indexes on every question and ingestion writes them once per chunk, so
the trade goes to the reader. ``answer_cache``'s index keeps the list: it is written on every
answer and read only when a document changes.
"""

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

READ_MOSTLY_GIN = ("chunks_tsv_idx", "documents_acl_idx", "documents_metadata_idx")


def upgrade() -> None:
    for index in READ_MOSTLY_GIN:
        op.execute(f"ALTER INDEX {index} SET (fastupdate = off)")
        # Turning the option off leaves what is already pending in place; merge it now.
        op.execute(f"SELECT gin_clean_pending_list('{index}'::regclass)")


def downgrade() -> None:
    for index in READ_MOSTLY_GIN:
        op.execute(f"ALTER INDEX {index} RESET (fastupdate)")
