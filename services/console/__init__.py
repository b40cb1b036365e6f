"""The web console: catalog, answer audits, review queue, guardrail decisions, evaluation runs
and the adapter registry, for stewards, SMEs and readers (server-rendered, htmx)."""
