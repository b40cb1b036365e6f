"""Evaluation runs and their per-case results.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01

A run records the test set's hash and the configuration it measured, so runs can be compared
only when they are comparable and a resumed run refuses another test set. One row per case and
run, written as soon as the case is scored: an interrupted run resumes from what is stored.
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE eval_runs (
            run_id        text PRIMARY KEY,
            testset       text NOT NULL,
            testset_hash  text NOT NULL,
            config        jsonb NOT NULL DEFAULT '{}'::jsonb,
            status        text NOT NULL DEFAULT 'running'
                          CHECK (status IN ('running', 'completed', 'failed')),
            started_at    timestamptz NOT NULL DEFAULT now(),
            finished_at   timestamptz,
            summary       jsonb,
            cases_total   integer NOT NULL DEFAULT 0
        )
        """
    )
    op.execute("CREATE INDEX eval_runs_started_idx ON eval_runs (started_at DESC)")
    op.execute(
        """
        CREATE TABLE eval_results (
            run_id      text NOT NULL REFERENCES eval_runs (run_id) ON DELETE CASCADE,
            case_id     text NOT NULL,
            result      jsonb NOT NULL,
            metrics     jsonb NOT NULL DEFAULT '{}'::jsonb,
            created_at  timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (run_id, case_id)
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS eval_results")
    op.execute("DROP TABLE IF EXISTS eval_runs")
