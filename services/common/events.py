"""Event models for every topic. Each mirrors one versioned JSON Schema in ``schemas/``.

New fields are added as optional with defaults, so older producers stay valid; a breaking change
gets a new schema version and a new model.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from services.common import contracts

ContentType = Literal["text/plain", "text/markdown", "text/html", "application/pdf",
                      "application/vnd.openxmlformats-officedocument.wordprocessingml.document"]
PrivacyClass = Literal["public", "internal", "confidential", "restricted"]
# A question vector of up to 2,048 float32 dimensions, base64 (the shipped encoders: 384).
MAX_VECTOR_BASE64 = 4 * ((2048 * 4 + 2) // 3)


def utc_now() -> datetime:
    return datetime.now(UTC)


class Event(BaseModel):
    """Base with the schema hook: ``to_json`` validates before anything leaves the process."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    schema_name: str = Field(default="", exclude=True, repr=False)
    schema_version: int = 1
    # Inbound events omit unset optional fields instead of sending nulls.
    omit_none: ClassVar[bool] = False

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=self.omit_none)

    def to_json(self) -> bytes:
        payload = self.to_dict()
        contracts.validate(self.schema_name, payload)
        return self.model_dump_json(exclude_none=self.omit_none).encode()


class Governance(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    title: str | None = None
    source: str | None = None
    uri: str | None = None
    license: str | None = None
    privacy_class: PrivacyClass = "internal"
    acl: list[str] = Field(default_factory=list)
    lineage: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)


class DocChange(Governance, Event):
    """The governance fields travel flat on the event (the wire format), inherited here.

    An upsert carries its content one of three ways: ``content`` (text), ``content_base64``
    (the file's bytes, e.g. a PDF, within the event size limit) or ``content_ref`` (a path
    relative to a root the ingest worker is allowed to read, for files too big for an event).
    ``op: acl`` carries only the access labels (acl, privacy_class, license): it relabels the
    stored document without re-chunking or re-embedding anything.
    """

    schema_name: str = Field(default="doc-change.v1", exclude=True, repr=False)
    doc_id: str
    version: int
    op: Literal["upsert", "delete", "acl"]
    content: str | None = None
    content_base64: str | None = Field(default=None, repr=False)
    content_ref: str | None = None
    content_type: ContentType = "text/plain"
    event_time: datetime = Field(default_factory=utc_now)
    omit_none: ClassVar[bool] = True

    def governance(self) -> Governance:
        return Governance.model_validate(self.model_dump(include=set(Governance.model_fields)))


class DocumentInfo(Governance):
    content_type: str = "text/plain"


class WorkChunk(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    chunk_id: str
    ordinal: int
    content_hash: str
    text: str
    word_count: int
    heading_path: list[str] = Field(default_factory=list)
    embed: bool = True  # a hint only: the embedder consults the embedding cache itself
    # Indirect prompt injection score from the ingest scan (0..1); None: not scanned.
    injection_score: float | None = None
    # Pages of a paged source (PDF) the chunk's text comes from, 1-based; None: not paged.
    page_start: int | None = None
    page_end: int | None = None


class ChunkWork(Event):
    schema_name: str = Field(default="chunk-work.v1", exclude=True, repr=False)
    doc_id: str
    version: int | None
    # "acl": only the document's access labels change; no chunks travel, nothing is embedded.
    # "failed": ingest could not read this version; the embedder records why (one writer of
    # index state, on the document's own ordered path).
    op: Literal["upsert", "delete", "acl", "failed"]
    content_hash: str | None = None
    document: DocumentInfo | None = None
    chunks: list[WorkChunk] = Field(default_factory=list)
    reason: str | None = None  # op "failed": why the version could not be ingested
    event_time: datetime = Field(default_factory=utc_now)


StatusState = Literal["indexed", "deleted", "stale_ignored", "duplicate", "failed"]


class DocStatus(Event):
    schema_name: str = Field(default="doc-status.v1", exclude=True, repr=False)
    doc_id: str
    version: int | None = None
    state: StatusState
    service: str
    chunks_total: int = 0
    chunks_embedded: int = 0
    chunks_reused: int = 0
    chunks_removed: int = 0
    model_id: str | None = None
    event_time: datetime | None = None
    at: datetime = Field(default_factory=utc_now)
    lag_ms: float | None = None
    reason: str | None = None


DlqErrorType = Literal[
    "too_large", "undecodable", "malformed_json", "schema_violation", "unsupported_content",
    "key_mismatch", "processing_error", "unauthenticated", "forbidden",
]


class DlqRecord(Event):
    schema_name: str = Field(default="dlq-record.v1", exclude=True, repr=False)
    original_topic: str
    partition: int | None = None
    offset: int | None = None
    key: str | None = None
    payload: str | None = None
    payload_encoding: Literal["utf8", "base64", "none"] = "utf8"
    payload_truncated: bool = False
    payload_bytes: int = 0
    error_type: DlqErrorType
    reason: str
    service: str
    failed_at: datetime = Field(default_factory=utc_now)


class Principal(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str
    groups: list[str] = Field(default_factory=list)
    clearance: PrivacyClass = "public"


class RagFilters(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    doc_ids: list[str] = Field(default_factory=list)
    doc_id_prefix: str | None = None
    sources: list[str] = Field(default_factory=list)
    licenses: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)


class RagOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    adapter: str | None = None
    top_k: int | None = None
    filters: RagFilters = Field(default_factory=RagFilters)
    max_tokens: int | None = None
    temperature: float = 0.0
    stream: bool = False
    retrieval_only: bool = False
    use_cache: bool = True
    domain: str | None = None
    # "extractive": a phrase copied from the evidence and cited (local backend); "free": the
    # model writes freely; None: the domain template's or the backend's default.
    answer_mode: Literal["extractive", "free"] | None = None


class ChatTurn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    role: Literal["user", "assistant"]
    content: str


class Decision(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)
    stage: str
    check: str
    action: str
    score: float | None = None
    reason: str | None = None
    policy_version: str | None = None


class QuestionVector(BaseModel):
    """The screened question's vector from the input stage's encoder (float32, base64).

    Why it travels: the input stage has already embedded the question for its learned heads,
    and when that encoder is the model the index serves the rag worker searches with this
    vector instead of encoding the question a second time. It is part of ``Screening``, so only
    the input stage's signed hand-off can carry it (a client's is replaced with the rest), and
    the rag worker uses it only for the model it names (``services.rag.query_encoder``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    model_id: str
    float32_base64: str = Field(max_length=MAX_VECTOR_BASE64)

    @classmethod
    def of(cls, model_id: str, vector: Any) -> QuestionVector:
        import numpy as np

        raw = np.ascontiguousarray(vector, dtype="<f4").reshape(-1).tobytes()
        return cls(model_id=model_id, float32_base64=base64.b64encode(raw).decode("ascii"))

    def array(self) -> Any:
        """The vector as a float32 array (numpy imported here: most event users never need
        it)."""
        import numpy as np

        return np.frombuffer(base64.b64decode(self.float32_base64, validate=True), dtype="<f4")


class Screening(BaseModel):
    """What the input guardrail decided, carried on ``rag.screened`` to the rag worker.

    Only the guardrails service writes ``rag.screened``; whatever a client puts in this field
    on ``rag.requests`` is replaced by the input stage, so it cannot switch a check off.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    policy_version: str
    decisions: list[Decision] = Field(default_factory=list)
    question_changed: bool = False
    # How the rag worker treats chunks the ingest scan marked as possible injections.
    marked_chunks: Literal["exclude", "fence", "allow"] = "fence"
    injection_threshold: float = 0.5
    # Documents above the principal's clearance: invisible (hide), or usable with their PII
    # redacted from the answer by the output stage (redact_pii).
    above_clearance: Literal["hide", "redact_pii"] = "hide"
    canary: str | None = None
    question_vector: QuestionVector | None = None


class RagRequest(Event):
    schema_name: str = Field(default="rag-request.v1", exclude=True, repr=False)
    request_id: str
    reply_to: str
    question: str
    history: list[ChatTurn] = Field(default_factory=list)
    # Derived by the input guardrail from ``credential``; whatever a client writes is replaced.
    principal: Principal | None = None
    credential: str | None = Field(default=None, repr=False)
    options: RagOptions = Field(default_factory=RagOptions)
    screening: Screening | None = None
    created_at: datetime = Field(default_factory=utc_now)
    handoff: dict[str, Any] | None = None
    omit_none: ClassVar[bool] = True


class Citation(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    n: int
    chunk_id: str
    chunk_ids: list[str] = Field(default_factory=list)
    doc_id: str
    uri: str | None = None
    title: str | None = None
    score: float = 0.0
    text: str | None = None
    # Where in the document: "p. 12", "pp. 3-4" (paged sources); None when not paged.
    locator: str | None = None




class Usage(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0


class RetrievedChunk(BaseModel):
    """A chunk the draft's prompt held, as the output stage needs it to check the answer."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    chunk_id: str
    doc_id: str
    privacy_class: PrivacyClass = "internal"
    text: str
    injection_score: float | None = None
    fenced: bool = False


class DraftEvidence(BaseModel):
    """Travels on ``rag.drafts`` only; the output stage strips it before the reply leaves."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    principal: Principal
    screening: Screening | None = None
    retrieved: list[RetrievedChunk] = Field(default_factory=list)


class RagReply(Event):
    schema_name: str = Field(default="rag-reply.v1", exclude=True, repr=False)
    request_id: str
    status: Literal["ok", "refused", "error"] = "ok"
    answer: str
    citations: list[Citation] = Field(default_factory=list)
    guardrails: list[Decision] = Field(default_factory=list)
    usage: Usage = Field(default_factory=Usage)
    latency_ms: dict[str, float] = Field(default_factory=dict)
    cached: bool = False
    cache_kind: Literal["exact", "semantic"] | None = None
    model: str | None = None
    adapter: str | None = None
    adapter_version: str | None = None
    backend: str | None = None
    template_version: str | None = None
    trace_id: str | None = None
    error: str | None = None
    error_code: str | None = None
    reply_to: str | None = None
    evidence: DraftEvidence | None = None
    created_at: datetime = Field(default_factory=utc_now)
    handoff: dict[str, Any] | None = None


# --- fine-tuning (finetune.requests / finetune.events) -----------------------------------------

FinetuneStatus = Literal["queued", "running", "evaluating", "completed", "failed", "cancelled"]


class FinetuneDataset(BaseModel):
    """A supervision snapshot by id, or a filter that snapshots the reviewed examples now.

    For ``continued_pretraining`` the filter selects knowledge-set chunks instead: ``sources``
    are document sources, ``max_privacy`` defaults to ``internal`` and ``licenses`` lists the
    licences that may be trained on (None: the worker's default trainable set)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    snapshot_id: str | None = None
    sources: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    max_privacy: PrivacyClass | None = None
    licenses: list[str] | None = None


class FinetuneEvaluation(BaseModel):
    """The promotion gate's test set (a JSONL path or inline cases) and its tolerances."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    testset: str | None = None
    cases: list[dict[str, Any]] = Field(default_factory=list)
    limit: int | None = None
    tolerances: dict[str, Any] = Field(default_factory=dict)
    domain: str = "default"
    top_k: int | None = None
    max_tokens: int | None = None
    doc_id_prefix: str | None = None
    n_boot: int = 1000


class FinetuneRequest(Event):
    """``action`` submit queues a job (once per ``job_id``); cancel stops it."""

    schema_name: str = Field(default="finetune-request.v1", exclude=True, repr=False)
    action: Literal["submit", "cancel"] = "submit"
    job_id: str
    adapter_name: str | None = None
    base_model: str | None = None
    # lora / qlora register an adapter; full / continued_pretraining a model version (all
    # weights) under the same registry name.
    method: Literal["lora", "qlora", "full", "continued_pretraining"] = "lora"
    dataset: FinetuneDataset | None = None
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    evaluation: FinetuneEvaluation | None = None
    promote: Literal["gate", "never"] = "gate"
    requested_by: str | None = None
    reason: str | None = None  # why a cancel was asked for, or why the policy queued a job
    # "auto": queued by the finetune worker's retraining policy; absent: by someone.
    trigger: Literal["manual", "auto"] | None = None
    created_at: datetime = Field(default_factory=utc_now)
    omit_none: ClassVar[bool] = True


class FinetuneEvent(Event):
    schema_name: str = Field(default="finetune-event.v1", exclude=True, repr=False)
    job_id: str
    status: FinetuneStatus
    attempt: int = 0
    worker_id: str | None = None
    adapter_name: str | None = None
    adapter_version: str | None = None
    progress: dict[str, Any] | None = None
    metrics: dict[str, Any] | None = None
    gate: dict[str, Any] | None = None
    promoted: bool | None = None
    error: str | None = None
    message: str | None = None
    trigger: Literal["manual", "auto"] | None = None  # on queued: who asked for the job
    at: datetime = Field(default_factory=utc_now)


# --- guardrails audit trail (guardrails.events) ------------------------------------------------


class GuardrailEvent(Event):
    """One guardrail decision, keyed by request_id: what was checked, how it scored, what was
    done and under which policy version, for the compliance record and for replay."""

    schema_name: str = Field(default="guardrail-event.v1", exclude=True, repr=False)
    event_id: str
    request_id: str
    stage: Literal["input", "output", "documents"]
    check: str
    action: str
    triggered: bool = False
    score: float | None = None
    reason: str | None = None
    policy_version: str
    principal_id: str | None = None
    domain: str | None = None
    trace_id: str | None = None
    at: datetime = Field(default_factory=utc_now)
