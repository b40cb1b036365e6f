"""The local engine's vocabulary: sampling parameters, tokens and completions.

Kept apart from the engine so the gateway's routes and the tests can use these types without
the engine's machinery.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from services.common.generation.base import FinishReason

RawFinish = Literal["length", "eos_token", "stop_sequence"]


@dataclass(frozen=True)
class SamplingParams:
    """How to pick tokens. Greedy unless ``do_sample``; sampling knobs apply only when sampling."""

    max_new_tokens: int
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    typical_p: float | None = None
    repetition_penalty: float | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()
    truncate: int | None = None  # keep only the last N prompt tokens

    @classmethod
    def chat(cls, max_tokens: int, temperature: float, stop: Sequence[str] = ()) -> SamplingParams:
        """Chat-API parameters: temperature 0 means greedy (and deterministic)."""
        if temperature > 0:
            return cls(max_new_tokens=max_tokens, do_sample=True, temperature=temperature,
                       stop=tuple(stop))
        return cls(max_new_tokens=max_tokens, stop=tuple(stop))


@dataclass(frozen=True)
class TokenEvent:
    """One generated token. ``text`` is its share of the generated text (pieces concatenate to
    it); a special token (end of turn) has its own string as text and is not part of it."""

    id: int
    text: str
    logprob: float | None
    special: bool


@dataclass(frozen=True)
class RawCompletion:
    """A generation in TGI's terms: text without special tokens, stop sequence included."""

    text: str
    tokens: tuple[TokenEvent, ...]
    prompt_ids: tuple[int, ...]
    finish_reason: RawFinish
    seed: int | None
    elapsed_s: float

    @property
    def completion_tokens(self) -> int:
        return len(self.tokens)


@dataclass(frozen=True)
class StreamItem:
    """A streamed token; the last one carries the finished completion."""

    token: TokenEvent
    final: RawCompletion | None


@dataclass(frozen=True)
class ChatCompletion:
    """A generation in chat terms: the answer stops before any stop sequence."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: FinishReason


OnToken = Callable[[TokenEvent, RawCompletion | None], None]


@dataclass(frozen=True)
class GenerationHooks:
    """Extra work inside one generation, while the engine holds the model (and its adapter):
    more logits processors (after the engine's own), and ``after(model, output)`` called with
    generate()'s output (``sequences`` and the ``past_key_values`` cache) before the model is
    released."""

    processors: tuple[Any, ...] = ()
    after: Callable[[Any, Any], None] | None = None
    # ``prepare(model, prompt_ids)`` runs first and returns extra generate() arguments (e.g. a
    # ``past_key_values`` cache it already filled with part of the prompt).
    prepare: Callable[[Any, list[int]], dict[str, Any]] | None = None
