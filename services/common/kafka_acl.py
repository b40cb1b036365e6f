"""Who may do what on the bus: the platform's Kafka ACLs, as data.

The broker runs with deny-by-default (``allow.everyone.if.no.acl.found=false``), so an
identity can do exactly what is listed here and nothing else. The list is applied by
``customllm up`` / ``customllm security apply`` and checked by ``customllm doctor``; writing it
once keeps the two from drifting.

Kinds of identity:
* services: one per stream processor and the gateway, fixed grants;
* ``operator``: the local CLI user (asks questions, queues fine-tuning, reads topics for
  monitoring); it cannot publish documents;
* ``source-<name>``: an approved document source (``customllm sources approve``), the only
  identities that may write ``docs.changes``;
* ``client-<name>``: an application using Kafka request/reply (``customllm clients create``):
  it writes ``rag.requests`` and reads only its own reply topics ``rag.replies.client-<name>*``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from services.common import topics as t

ResourceKind = Literal["topic", "group", "cluster"]
Pattern = Literal["literal", "prefixed"]
Operation = Literal["read", "write", "create", "describe", "describe_configs", "alter",
                    "idempotent_write"]

SOURCE_PREFIX = "source-"
CLIENT_PREFIX = "client-"
ADMIN = "admin"
OPERATOR = "operator"


@dataclass(frozen=True)
class Grant:
    resource: ResourceKind
    name: str
    operations: tuple[Operation, ...]
    pattern: Pattern = "literal"


def _reads(*names: str) -> list[Grant]:
    return [Grant("topic", name, ("read", "describe")) for name in names]


def _writes(*names: str) -> list[Grant]:
    return [Grant("topic", name, ("write", "describe")) for name in names]


def _group(name: str, pattern: Pattern = "literal") -> Grant:
    return Grant("group", name, ("read", "describe"), pattern)


def reply_topic_for(identity: str) -> str:
    """A client's private reply topic: only that identity (and guardrails, to answer) can
    touch it."""
    return f"{t.RAG_REPLIES}.{identity}"


def _own_replies(identity: str) -> list[Grant]:
    """Create (on demand) and read its own reply topics, nobody else's."""
    return [Grant("topic", reply_topic_for(identity), ("read", "describe", "create"),
                  "prefixed"),
            _group(f"customllm-{identity}", "prefixed")]


SERVICE_GRANTS: dict[str, list[Grant]] = {
    "ingest": [*_reads(t.DOCS_CHANGES), *_writes(t.CHUNKS_EMBED, t.DOCS_CHANGES_DLQ,
                                                 t.DOCS_STATUS),
               _group("customllm-ingest")],
    "embedder": [*_reads(t.CHUNKS_EMBED), *_writes(t.DOCS_STATUS, t.CHUNKS_EMBED_DLQ),
                 _group("customllm-embedder")],
    "guardrails": [*_reads(t.RAG_REQUESTS, t.RAG_DRAFTS),
                   *_writes(t.RAG_SCREENED, t.RAG_REQUESTS_DLQ, t.GUARDRAILS_EVENTS),
                   # Answers go to the requester's own reply topic, whichever client it is.
                   Grant("topic", f"{t.RAG_REPLIES}.", ("write", "describe"), "prefixed"),
                   _group("customllm-guardrails")],
    "rag": [*_reads(t.RAG_SCREENED, t.DOCS_STATUS), *_writes(t.RAG_DRAFTS, t.RAG_REQUESTS_DLQ),
            _group("customllm-rag")],
    "gateway": [*_writes(t.RAG_REQUESTS, t.RAG_FEEDBACK), *_own_replies("gateway")],
    # The audit recorder: each answer's audit record (question, retrieved chunks, template,
    # adapter, guardrail decisions) and users' feedback on it, stored in Postgres. Read-only
    # on the query path; it writes only the feedback it refuses, with the reason.
    "audit": [*_reads(t.RAG_SCREENED, t.RAG_DRAFTS, t.GUARDRAILS_EVENTS, t.RAG_FEEDBACK),
              *_writes(t.RAG_FEEDBACK_DLQ), _group("customllm-audit")],
    # The promotion gate asks its evaluation questions through the real query path; the
    # retraining policy queues its automatic jobs on finetune.requests like anyone else.
    "finetune": [Grant("topic", t.FINETUNE_REQUESTS, ("read", "write", "describe")),
                 *_writes(t.FINETUNE_EVENTS, t.FINETUNE_REQUESTS_DLQ, t.RAG_REQUESTS),
                 _group("customllm-finetune"), *_own_replies("finetune")],
}

# The local CLI user: questions, evaluation runs and fine-tuning jobs; read-only monitoring of
# the pipeline topics (doctor, docs, follow). Not document publishing, not other replies.
OPERATOR_GRANTS: list[Grant] = [
    *_writes(t.RAG_REQUESTS, t.FINETUNE_REQUESTS, t.RAG_FEEDBACK),
    *_reads(t.FINETUNE_EVENTS, t.DOCS_STATUS, t.DOCS_CHANGES_DLQ, t.CHUNKS_EMBED_DLQ,
            t.RAG_REQUESTS_DLQ, t.FINETUNE_REQUESTS_DLQ, t.GUARDRAILS_EVENTS,
            t.RAG_FEEDBACK_DLQ),
    *_own_replies(OPERATOR),
    Grant("group", "customllm-", ("describe",), "prefixed"),
    Grant("cluster", "kafka-cluster", ("describe",)),
]


def source_grants(identity: str) -> list[Grant]:
    return _writes(t.DOCS_CHANGES)


def client_grants(identity: str) -> list[Grant]:
    return [*_writes(t.RAG_REQUESTS, t.RAG_FEEDBACK), *_own_replies(identity)]


def grants_for(identity: str) -> list[Grant]:
    """The complete grant list of one identity; unknown identities get nothing."""
    if identity in SERVICE_GRANTS:
        return SERVICE_GRANTS[identity]
    if identity == OPERATOR:
        return OPERATOR_GRANTS
    if identity.startswith(SOURCE_PREFIX):
        return source_grants(identity)
    if identity.startswith(CLIENT_PREFIX):
        return client_grants(identity)
    return []


def source_identity(source: str) -> str:
    return f"{SOURCE_PREFIX}{source}"


def client_identity(name: str) -> str:
    return f"{CLIENT_PREFIX}{name}"


def valid_name(name: str) -> bool:
    """Identity names end up in topic names and ACLs: keep them to a safe alphabet."""
    return 0 < len(name) <= 100 and all(c.isalnum() or c in "-_." for c in name) \
        and not name.startswith((".", "-"))
