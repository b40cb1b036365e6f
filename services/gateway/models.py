"""OpenAI-compatible request and response bodies (the subset the gateway serves), plus the
customllm extensions that clients pass with ``extra_body``."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from services.common.events import Citation, RagFilters


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return " ".join(part.get("text", "") for part in self.content
                            if part.get("type") == "text")
        return self.content or ""


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1, le=4096)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=4096)
    temperature: float = Field(default=0.0, ge=0, le=2)
    stream: bool = False
    user: str | None = None
    # customllm extensions
    top_k: int | None = Field(default=None, ge=1, le=50)
    filters: RagFilters | None = None
    retrieval_only: bool = False
    use_cache: bool = True
    domain: str | None = Field(default=None, pattern=r"^[a-z0-9_-]{1,64}$")


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "customllm"
    parent: str | None = None


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ResponseMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str
    refusal: str | None = None


class Choice(BaseModel):
    index: int = 0
    message: ResponseMessage
    finish_reason: Literal["stop", "length", "content_filter"] = "stop"


class UsageBody(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class CustomLLMInfo(BaseModel):
    request_id: str
    status: str
    cached: bool
    cache_kind: str | None
    latency_ms: dict[str, float]
    guardrails: list[dict[str, Any]]
    template_version: str | None
    trace_id: str | None
    adapter: str | None
    cost_usd: float
    adapter_version: str | None = None  # the registry version that answered ("v3")


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: UsageBody
    citations: list[Citation]
    customllm: CustomLLMInfo
