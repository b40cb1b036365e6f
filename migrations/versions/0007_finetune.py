"""Fine-tuning jobs (idempotent, resumable) and the adapter registry.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26

``finetune_jobs`` is the durable queue behind ``finetune.requests``: the intake inserts a job once
(its id is the primary key, so a redelivered request is not queued twice) and workers claim
rows with ``FOR UPDATE SKIP LOCKED``, holding a lease they renew with a heartbeat. A job whose
lease ran out (its worker died) is claimed again and resumed from its checkpoint, or failed with
the reason once its attempts are used up.

``adapters`` is the registry: one row per trained version, at most one ``promoted`` version per
name (a partial unique index, so two concurrent promotions cannot both win).
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE finetune_jobs (
            job_id            text PRIMARY KEY,
            request           jsonb NOT NULL,
            adapter_name      text NOT NULL,
            base_model        text NOT NULL,
            method            text NOT NULL CHECK (method IN ('lora', 'qlora')),
            status            text NOT NULL DEFAULT 'queued'
                              CHECK (status IN ('queued', 'running', 'evaluating', 'completed',
                                                'failed', 'cancelled')),
            attempt           integer NOT NULL DEFAULT 0,
            worker_id         text,
            lease_expires_at  timestamptz,
            heartbeat_at      timestamptz,
            progress          jsonb NOT NULL DEFAULT '{}'::jsonb,
            result            jsonb NOT NULL DEFAULT '{}'::jsonb,
            error             text,
            cancel_requested  boolean NOT NULL DEFAULT false,
            adapter_version   integer,
            mlflow_run_id     text,
            created_at        timestamptz NOT NULL DEFAULT now(),
            updated_at        timestamptz NOT NULL DEFAULT now(),
            started_at        timestamptz,
            finished_at       timestamptz
        )
        """
    )
    # The claim query scans only the live jobs, oldest first.
    op.execute(
        "CREATE INDEX finetune_jobs_live_idx ON finetune_jobs (created_at) "
        "WHERE status IN ('queued', 'running', 'evaluating')"
    )
    op.execute("CREATE INDEX finetune_jobs_created_idx ON finetune_jobs (created_at DESC)")
    op.execute(
        """
        CREATE TABLE adapters (
            name           text NOT NULL,
            version        integer NOT NULL CHECK (version >= 1),
            base_model     text NOT NULL,
            method         text NOT NULL,
            job_id         text REFERENCES finetune_jobs (job_id) ON DELETE SET NULL,
            snapshot_id    text,
            dataset_hash   text,
            status         text NOT NULL DEFAULT 'candidate'
                           CHECK (status IN ('candidate', 'promoted', 'retired')),
            metrics        jsonb NOT NULL DEFAULT '{}'::jsonb,
            gate           jsonb NOT NULL DEFAULT '{}'::jsonb,
            hyperparameters jsonb NOT NULL DEFAULT '{}'::jsonb,
            card_markdown  text NOT NULL DEFAULT '',
            path           text NOT NULL,
            mlflow_run_id  text,
            created_at     timestamptz NOT NULL DEFAULT now(),
            promoted_at    timestamptz,
            retired_at     timestamptz,
            PRIMARY KEY (name, version)
        )
        """
    )
    op.execute(
        "CREATE UNIQUE INDEX adapters_one_promoted_idx ON adapters (name) "
        "WHERE status = 'promoted'"
    )
    # A job registers at most one version: a retried registration finds the row it wrote.
    op.execute("CREATE UNIQUE INDEX adapters_job_idx ON adapters (job_id) WHERE job_id IS NOT NULL")
    # Transactional outbox: a job's lifecycle event is written in the same transaction as its
    # status, sent to finetune.events afterwards and deleted once the broker acknowledged it,
    # so a crash between the two repeats the event instead of losing it.
    op.execute(
        """
        CREATE TABLE finetune_outbox (
            id          bigserial PRIMARY KEY,
            job_id      text NOT NULL,
            payload     jsonb NOT NULL,
            created_at  timestamptz NOT NULL DEFAULT now()
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS finetune_outbox")
    op.execute("DROP TABLE IF EXISTS adapters")
    op.execute("DROP TABLE IF EXISTS finetune_jobs")
