"""Answers' audit records, guardrail decisions, users' feedback, adapter decisions.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02

Until now an answer's audit trail lived only on Kafka (``guardrails.events``, 90 days), which
a steward cannot search and a console cannot show. The audit recorder (``services/audit``)
now keeps, per request id:

* ``answer_audit``: who asked (the principal the input guardrail derived), the screened
  question, the retrieved chunks with their document versions, template, model, adapter and
  version, usage and cost, latency and the trace id. Filled from ``rag.screened`` and
  ``rag.drafts`` as each arrives (either may come first), so every column but the key is
  nullable.
* ``guardrail_decisions``: one row per ``guardrails.events`` record (its stable event_id is
  the key, so redelivery stores nothing twice), including requests blocked before retrieval,
  which never get a question or an answer.
* ``answer_feedback``: users' ratings, corrections and comments, with the principal derived
  from their verified credential, keyed by feedback_id (a retried POST is stored once).
* ``adapter_decisions``: every promotion or retirement with who decided, why and the gate
  verdict it was decided on; the registry's ``adapters`` row says the current state, this
  table says how it got there.
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE answer_audit (
            request_id        text PRIMARY KEY,
            principal_id      text,
            principal_groups  text[] NOT NULL DEFAULT '{}',
            clearance         text,
            domain            text,
            question          text,
            options           jsonb NOT NULL DEFAULT '{}'::jsonb,
            policy_version    text,
            status            text,
            answer            text,
            citations         jsonb NOT NULL DEFAULT '[]'::jsonb,
            retrieved         jsonb NOT NULL DEFAULT '[]'::jsonb,
            template_version  text,
            model             text,
            backend           text,
            adapter           text,
            adapter_version   text,
            usage             jsonb NOT NULL DEFAULT '{}'::jsonb,
            latency_ms        jsonb NOT NULL DEFAULT '{}'::jsonb,
            cached            boolean,
            trace_id          text,
            asked_at          timestamptz,
            answered_at       timestamptz,
            created_at        timestamptz NOT NULL DEFAULT now(),
            updated_at        timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute("CREATE INDEX answer_audit_created_idx ON answer_audit (created_at DESC)")
    op.execute("CREATE INDEX answer_audit_principal_idx ON answer_audit "
               "(principal_id, created_at DESC)")
    op.execute(
        """
        CREATE TABLE guardrail_decisions (
            event_id        text PRIMARY KEY,
            request_id      text NOT NULL,
            stage           text NOT NULL,
            check_name      text NOT NULL,
            action          text NOT NULL,
            triggered       boolean NOT NULL DEFAULT false,
            score           real,
            reason          text,
            policy_version  text NOT NULL,
            principal_id    text,
            domain          text,
            trace_id        text,
            at              timestamptz NOT NULL
        )
        """
    )
    op.execute("CREATE INDEX guardrail_decisions_request_idx ON guardrail_decisions (request_id)")
    op.execute("CREATE INDEX guardrail_decisions_at_idx ON guardrail_decisions (at DESC)")
    op.execute("CREATE INDEX guardrail_decisions_filter_idx ON guardrail_decisions "
               "(check_name, action, at DESC)")
    op.execute(
        """
        CREATE TABLE answer_feedback (
            feedback_id   text PRIMARY KEY,
            request_id    text NOT NULL REFERENCES answer_audit (request_id) ON DELETE CASCADE,
            principal_id  text NOT NULL,
            role          text NOT NULL,
            rating        smallint NOT NULL CHECK (rating BETWEEN -1 AND 1),
            correction    text,
            comment       text,
            channel       text NOT NULL,
            created_at    timestamptz NOT NULL,
            recorded_at   timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute("CREATE INDEX answer_feedback_request_idx ON answer_feedback (request_id)")
    op.execute("CREATE INDEX answer_feedback_negative_idx ON answer_feedback (recorded_at) "
               "WHERE rating < 0 OR correction IS NOT NULL")
    op.execute(
        """
        CREATE TABLE adapter_decisions (
            id          bigserial PRIMARY KEY,
            name        text NOT NULL,
            version     integer NOT NULL,
            action      text NOT NULL CHECK (action IN ('promote', 'retire')),
            actor       text NOT NULL,
            reason      text NOT NULL,
            gate        jsonb NOT NULL DEFAULT '{}'::jsonb,
            at          timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute("CREATE INDEX adapter_decisions_name_idx ON adapter_decisions (name, at DESC)")


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS adapter_decisions")
    op.execute("DROP TABLE IF EXISTS answer_feedback")
    op.execute("DROP TABLE IF EXISTS guardrail_decisions")
    op.execute("DROP TABLE IF EXISTS answer_audit")
