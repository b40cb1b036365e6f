"""Every topic the platform uses, declared once with its partitions and retention.

Topics are created explicitly and idempotently (``customllm topics`` / ``customllm up``); the
broker's auto-creation is off, so a misspelt topic fails loudly instead of appearing empty.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from pydantic import BaseModel

DAY_MS = 24 * 60 * 60 * 1000
BROKER_MAX_MESSAGE_BYTES = 1_048_588  # Kafka's default max.message.bytes
DLQ_SCHEMA = "dlq-record.v1"  # every dead-letter topic carries the same record


@dataclass(frozen=True)
class TopicSpec:
    name: str
    schema: str | None
    purpose: str
    config: dict[str, str] = field(default_factory=dict)
    partitions: int | None = None  # None: the configured default

    @property
    def model(self) -> type[BaseModel] | None:
        """The pydantic model producers build and consumers parse (the schema's code view)."""
        return _models_by_schema().get(self.schema or "")

    @property
    def max_bytes(self) -> int:
        """The largest value the broker accepts on this topic: the consumers' hard size cap."""
        return int(self.config.get("max.message.bytes", BROKER_MAX_MESSAGE_BYTES))


DOCS_CHANGES = "docs.changes"
DOCS_CHANGES_DLQ = "docs.changes.dlq"
CHUNKS_EMBED = "chunks.embed"
CHUNKS_EMBED_DLQ = "chunks.embed.dlq"
DOCS_STATUS = "docs.status"
RAG_REQUESTS = "rag.requests"
RAG_REQUESTS_DLQ = "rag.requests.dlq"
RAG_SCREENED = "rag.screened"
RAG_DRAFTS = "rag.drafts"
RAG_REPLIES = "rag.replies"
GUARDRAILS_EVENTS = "guardrails.events"
FINETUNE_REQUESTS = "finetune.requests"
FINETUNE_REQUESTS_DLQ = "finetune.requests.dlq"
FINETUNE_EVENTS = "finetune.events"
RAG_FEEDBACK = "rag.feedback"
RAG_FEEDBACK_DLQ = "rag.feedback.dlq"

TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec(DOCS_CHANGES, "doc-change.v1", "document upserts and deletes, keyed by doc_id",
              {"retention.ms": str(7 * DAY_MS), "max.message.bytes": "8388608"}),
    TopicSpec(DOCS_CHANGES_DLQ, "dlq-record.v1", "document events that could not be ingested",
              {"retention.ms": str(30 * DAY_MS), "max.message.bytes": "8388608"}),
    TopicSpec(CHUNKS_EMBED, "chunk-work.v1", "one document version's chunk set for the embedder",
              {"retention.ms": str(7 * DAY_MS), "max.message.bytes": "8388608"}),
    TopicSpec(CHUNKS_EMBED_DLQ, "dlq-record.v1", "chunk work the embedder could not apply",
              {"retention.ms": str(30 * DAY_MS), "max.message.bytes": "8388608"}),
    # Compacted: the latest status per document is what consumers (caches, dashboards) need.
    TopicSpec(DOCS_STATUS, "doc-status.v1", "per-document indexing status, keyed by doc_id",
              {"cleanup.policy": "compact,delete", "retention.ms": str(30 * DAY_MS)}),
    # Questions and answers are short-lived: a day is plenty to replay or debug.
    TopicSpec(RAG_REQUESTS, "rag-request.v1", "questions from clients, keyed by request_id",
              {"retention.ms": str(DAY_MS)}),
    TopicSpec(RAG_REQUESTS_DLQ, "dlq-record.v1", "requests that could not be processed",
              {"retention.ms": str(7 * DAY_MS)}),
    TopicSpec(RAG_SCREENED, "rag-request.v1", "requests the input guardrails let through",
              {"retention.ms": str(DAY_MS)}),
    TopicSpec(RAG_DRAFTS, "rag-reply.v1", "generated answers awaiting the output guardrails",
              {"retention.ms": str(DAY_MS)}),
    TopicSpec(RAG_REPLIES, "rag-reply.v1", "the default reply topic, keyed by request_id",
              {"retention.ms": str(DAY_MS)}),
    # The audit trail: kept long enough for a compliance review and for replay with a new policy.
    TopicSpec(GUARDRAILS_EVENTS, "guardrail-event.v1",
              "every guardrail decision (request_id, stage, check, score, action, policy version)",
              {"retention.ms": str(90 * DAY_MS)}),
    TopicSpec(FINETUNE_REQUESTS, "finetune-request.v1", "fine-tuning jobs, keyed by job_id",
              {"retention.ms": str(30 * DAY_MS)}),
    TopicSpec(FINETUNE_REQUESTS_DLQ, "dlq-record.v1", "fine-tuning jobs that could not be read",
              {"retention.ms": str(30 * DAY_MS)}),
    TopicSpec(FINETUNE_EVENTS, "finetune-event.v1",
              "job lifecycle: queued, running (progress, loss), evaluating, completed, failed, "
              "cancelled; keyed by job_id", {"retention.ms": str(30 * DAY_MS)}),
    # Feedback carries the caller's credential (like rag.requests): short retention, the
    # recorder stores what it verified in Postgres with the answer's audit record.
    TopicSpec(RAG_FEEDBACK, "feedback.v1", "users' ratings and corrections, keyed by request_id",
              {"retention.ms": str(DAY_MS)}),
    TopicSpec(RAG_FEEDBACK_DLQ, "dlq-record.v1",
              "feedback refused (unauthenticated, forbidden, unknown request, invalid)",
              {"retention.ms": str(7 * DAY_MS)}),
)


def dlq_for(topic: str) -> str:
    return f"{topic}.dlq"


def spec(name: str) -> TopicSpec:
    """The registry entry of a topic; a client's private reply topic (``rag.replies.<client>``)
    shares the contract of ``rag.replies``."""
    for topic in TOPICS:
        if topic.name == name:
            return topic
    if name.startswith(RAG_REPLIES + "."):
        return spec(RAG_REPLIES)
    raise KeyError(f"unknown topic {name!r}: declare it in services/common/topics.py")


@functools.cache
def _models_by_schema() -> dict[str, type[BaseModel]]:
    """Every event model names its schema in its ``schema_name`` default."""
    from services.common import events

    models: dict[str, type[BaseModel]] = {}
    for value in vars(events).values():
        if isinstance(value, type) and issubclass(value, BaseModel):
            field_info = value.model_fields.get("schema_name")
            if field_info is not None and isinstance(field_info.default, str):
                models[field_info.default] = value
    return models
