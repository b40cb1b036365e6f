"""What the rag worker takes from the shared settings."""

from __future__ import annotations

from dataclasses import dataclass

from services.common.config import Settings

SERVICE_NAME = "rag"
APP_ID = "customllm-rag"
MAX_REQUEST_BYTES = 1_000_000


@dataclass(frozen=True)
class RagConfig:
    top_k: int
    candidates: int
    context_token_budget: int
    max_new_tokens: int
    domain: str
    min_relevance: float
    cache_threshold: float
    cache_ttl_s: float
    price_prompt_per_1k: float
    price_completion_per_1k: float
    model_id: str


def rag_config(settings: Settings) -> RagConfig:
    return RagConfig(
        top_k=settings.retrieval_top_k,
        candidates=settings.retrieval_candidates,
        context_token_budget=settings.context_token_budget,
        max_new_tokens=settings.max_new_tokens,
        domain=settings.prompt_domain,
        min_relevance=settings.min_relevance,
        cache_threshold=settings.semantic_cache_threshold,
        cache_ttl_s=settings.cache_ttl_s,
        price_prompt_per_1k=settings.price_per_1k_prompt_tokens,
        price_completion_per_1k=settings.price_per_1k_completion_tokens,
        model_id=settings.local_model_id if settings.generation_backend == "local"
        else settings.openai_model if settings.generation_backend == "openai" else settings.tgi_url,
    )
