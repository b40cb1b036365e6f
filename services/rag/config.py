"""The rag worker's own settings (``CUSTOMLLM_*`` variables; the connections and the
generation backend are the shared settings)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

SERVICE_NAME = "rag"
APP_ID = "customllm-rag"
MAX_REQUEST_BYTES = 1_000_000


class RagSettings(BaseSettings):
    """Frozen: a worker keeps the configuration it started with."""

    model_config = SettingsConfigDict(env_prefix="CUSTOMLLM_", frozen=True, extra="ignore")

    retrieval_top_k: int = 5
    retrieval_unit: Literal["auto", "passage", "chunk"] = Field(
        default="auto", description="What top_k counts: passages (consecutive chunks of a "
        "document, one citation each; a paragraph the chunker split takes one slot, not three) "
        "or chunks. auto: passages for a retrieval-only reply, chunks for the context of a "
        "generated answer (the shipped answer adapter and its abstention margin were "
        "calibrated on that context; a passage context has not been measured for answers).")
    retrieval_candidates: int = Field(
        default=40, description="Candidates per ranking (vector and BM25) before fusion.")
    reranker_model_path: Path | None = Field(
        default=None, description="sentence-transformers cross-encoder folder; unset: no "
        "reranking (no reranker model ships with the project).")
    rag_encoder_threads: int = Field(
        default=1, ge=0, description="Threads of the question encoder (0: one per core; "
        "for MiniLM int8, one-thread calls at once, so one question always takes one). One "
        "question is a few tokens: on 2 cores MiniLM int8 took 3.6 ms on one intra-op thread "
        "and 6.9 ms on two (waking the second costs more than it computes); throughput comes "
        "from the agents' concurrency and from replicas.")
    context_token_budget: int = 1200
    prompt_domain: str = "default"
    semantic_cache_threshold: float = 0.95
    cache_ttl_s: float = 86_400.0
    min_relevance: float = Field(
        default=0.3, description="Below this cosine similarity of the best chunk, answer "
        "'don't know' without calling the model.")
    price_per_1k_prompt_tokens: float = 0.0
    price_per_1k_completion_tokens: float = 0.0


@lru_cache(maxsize=1)
def rag_settings() -> RagSettings:
    return RagSettings()
