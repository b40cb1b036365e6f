"""What every generation backend takes and gives, so the rag worker never knows which one runs.

The local engine, a TGI server and any OpenAI-compatible server all sit behind
:class:`GenerationBackend`; their differences (prompt templates, token accounting, error types)
are absorbed in their own modules and never leak past these types.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from services.common.exceptions import CustomLLMError

ROLES = frozenset({"system", "user", "assistant"})
MAX_STOP_SEQUENCES = 4  # OpenAI's limit and TGI's default ``max_stop_sequences``

FinishReason = Literal["stop", "length"]


class GenerationError(CustomLLMError):
    """Generation failed: backend unreachable, timed out, or refused the request.

    The message says which backend and why, since it ends up in the reply's ``error`` field.
    """


class UnknownAdapter(GenerationError):
    """The requested LoRA adapter does not exist; the message lists the ones that do."""

    def __init__(self, name: str, available: Sequence[str] | None, where: str = "") -> None:
        listing = "not reported" if available is None else ", ".join(available) or "none"
        suffix = f" ({where})" if where else ""
        super().__init__(f"unknown adapter {name!r}; available adapters: {listing}{suffix}")
        self.name = name
        self.available = tuple(available or ())


class InvalidGenerationRequest(GenerationError):
    """The request itself is wrong (empty messages, bad role, max_tokens < 1, prompt too long).

    Distinct from :class:`GenerationError` so callers can tell "fix the request" from "retry".
    """


@dataclass(frozen=True)
class Extractive:
    """Ask for an answer copied from the evidence: a span of one passage and its marker
    (``"sixty days [2]"``), or exactly ``no_answer``. Backends that cannot constrain decoding
    (remote servers) say so with ``constrains = False`` and the caller generates freely.
    ``abstain_margin``: answer ``no_answer`` when the model scores it this much above the span
    (mean log-probability per token); None keeps the model's own constrained choice."""

    passages: tuple[tuple[int, str], ...]  # (citation number, text)
    no_answer: str
    abstain_margin: float | None = None
    max_span_tokens: int = 10
    question: str | None = None  # keeps spans to the sentences about it (evidence_focus.py)
    prior_weight: float = 1.0  # first token against the "N/A"-question prior (prior.py); 0: off
    # spans may run through the question's words (never start with one): the answer adapter's
    # rule when its data card says it was trained under it (evidence_tokens.build_constraint)
    question_words_inside: bool = False
    # sentences of the answer adapter's compact prompt, as its data card records; None: the
    # current recipe's (evidence_prompt.FOCUS_SENTENCES)
    focus_sentences: int | None = None
    # a bare year asked for as a date widened to the month or day its passage writes
    # before it (date_precision.py): still a span of the cited passage
    date_precision: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "passages", tuple((int(n), str(t)) for n, t in self.passages))
        if not self.no_answer.strip():
            raise InvalidGenerationRequest("an extractive answer needs the no-answer text")
        if self.max_span_tokens < 1:
            raise InvalidGenerationRequest("max_span_tokens must be >= 1")


@dataclass(frozen=True)
class GenerationRequest:
    """One chat completion. Validated on construction so no backend sees a malformed request."""

    messages: list[dict[str, str]]  # chat messages {"role": system|user|assistant, "content"}
    max_tokens: int = 256
    temperature: float = 0.0  # 0 → greedy, deterministic
    adapter: str | None = None  # LoRA adapter name (local engine), or model suffix (openai/tgi)
    stop: tuple[str, ...] = ()
    extractive: Extractive | None = None  # constrain the answer to the evidence (see above)

    def __post_init__(self) -> None:
        _check_messages(self.messages)
        if isinstance(self.max_tokens, bool) or not isinstance(self.max_tokens, int) \
                or self.max_tokens < 1:
            raise InvalidGenerationRequest(
                f"max_tokens must be an integer >= 1, got {self.max_tokens!r}")
        if isinstance(self.temperature, bool) or not isinstance(self.temperature, int | float) \
                or not 0.0 <= self.temperature <= 2.0:
            raise InvalidGenerationRequest(
                f"temperature must be within [0, 2], got {self.temperature!r}")
        if self.adapter is not None and not self.adapter.strip():
            raise InvalidGenerationRequest("adapter must be a name or None, not blank")
        # A list is accepted (JSON gives lists) and stored as a tuple, so the request cannot
        # change after it was validated.
        object.__setattr__(self, "stop", _checked_stops(self.stop))


def _check_messages(messages: list[dict[str, str]]) -> None:
    if not messages:
        raise InvalidGenerationRequest("messages must not be empty")
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise InvalidGenerationRequest(f"message {index} is not a mapping")
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise InvalidGenerationRequest(
                f"message {index} has role {role!r}; expected one of {sorted(ROLES)}")
        if not isinstance(content, str):
            raise InvalidGenerationRequest(f"message {index} has no text content")


def _checked_stops(stop: Sequence[str]) -> tuple[str, ...]:
    stops = tuple(stop)
    if len(stops) > MAX_STOP_SEQUENCES:
        raise InvalidGenerationRequest(
            f"at most {MAX_STOP_SEQUENCES} stop sequences, got {len(stops)}")
    if any(not isinstance(s, str) or not s for s in stops):
        raise InvalidGenerationRequest("stop sequences must be non-empty strings")
    return stops


@dataclass(frozen=True)
class GenerationResult:
    """The answer plus what it cost, in the model's own tokens."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    model: str
    adapter: str | None
    finish_reason: FinishReason  # "stop" (end of turn or stop sequence) | "length" (max_tokens)
    abstained: bool = False  # an extractive answer that is the no-answer text
    scores: dict[str, float] | None = None  # an extractive answer's scores (see extractive.py)


@runtime_checkable
class GenerationBackend(Protocol):
    """A chat model. ``stream`` yields text pieces whose concatenation equals ``generate``'s
    text for temperature 0, so a caller may switch between the two freely."""

    name: str

    def warm_up(self) -> None:
        """Load or connect before the first request, so the first answer is not the slow one."""

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        """The whole completion."""

    def stream(self, request: GenerationRequest) -> AsyncIterator[str]:
        """The completion as text pieces, as they are produced."""
