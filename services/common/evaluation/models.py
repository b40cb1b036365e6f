"""Evaluation data: test cases in, per-case results out. Shared by the runner, the metrics and
the reports, so each can be tested on its own."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Expected = Literal["answer", "refuse"]


class EvalCase(BaseModel):
    """One line of a test set (JSONL)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = Field(min_length=1, max_length=256)
    question: str = Field(min_length=1)
    answers: list[str] = Field(default_factory=list, description="reference answers")
    gold_doc_ids: list[str] = Field(default_factory=list, description="documents holding it")
    expected: Expected = "answer"
    tags: list[str] = Field(default_factory=list)
    meta: dict[str, Any] = Field(default_factory=dict)


class CaseUsage(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0


class CaseResult(BaseModel):
    """What the system did for one case (the reference data travels with it so scoring needs
    nothing else)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    run_id: str
    case_id: str
    question: str
    expected: Expected
    tags: list[str] = Field(default_factory=list)
    answers: list[str] = Field(default_factory=list)
    gold_doc_ids: list[str] = Field(default_factory=list)
    answer: str = ""
    status: Literal["ok", "refused", "error"] = "ok"
    abstained: bool = False
    cited_doc_ids: list[str] = Field(default_factory=list, description="in citation order")
    retrieved_doc_ids: list[str] = Field(default_factory=list, description="ranked, top 10")
    contexts: list[str] = Field(default_factory=list, description="text of the cited context")
    guardrails: list[dict[str, Any]] = Field(default_factory=list)
    latency_ms: dict[str, float] = Field(default_factory=dict)
    usage: CaseUsage = Field(default_factory=CaseUsage)
    cached: bool = False
    error: str | None = None


class RunConfig(BaseModel):
    """What was measured: enough to reproduce the run and to refuse comparing apples to pears."""

    model_config = ConfigDict(extra="allow", frozen=True)
    testset: str
    testset_hash: str
    backend: str | None = None
    model: str | None = None
    adapter: str | None = None
    domain: str = "default"
    template_version: str | None = None
    top_k: int | None = None
    limit: int | None = None
    seed: int = 0
