"""One extractive answer from the local engine: constrained decoding, then the abstention check.

The model writes under :class:`ConstrainedLogits`, so it can only copy a span and cite its
passage, or write the "don't know" text. Greedy decoding alone rarely picks "don't know" (a
copied phrase is always available and usually likelier token by token), so once a span is
written the "don't know" text is scored too, on the same prompt cache, and the answer becomes
"don't know" when the model prefers it by more than ``abstain_margin``: the first tokens are the
decision, so the comparison is between the first token of each (see :func:`decide`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from services.rag.generation.base import Extractive
from services.rag.generation.constrained import ConstrainedLogits, continuation_logprobs
from services.rag.generation.engine_types import GenerationHooks, RawCompletion, SamplingParams
from services.rag.generation.evidence import Fixed, cited
from services.rag.generation.evidence_tokens import build_constraint
from services.rag.generation.local_engine import LocalEngine

MARKER_AND_END = 6  # room after the span: " [", digits, "]", end of turn


@dataclass(frozen=True)
class ExtractiveAnswer:
    text: str  # "span [n]", or the no-answer text
    abstained: bool
    completion: RawCompletion
    scores: dict[str, float]


@dataclass
class _Run:
    """What the hooks collect during one generation."""

    processor: ConstrainedLogits
    no_answer: tuple[int, ...]
    no_answer_logprobs: list[float] | None = None

    def after(self, model: Any, output: Any) -> None:
        prompt_len = self.processor.prompt_len
        self.processor.finish(output.sequences[0, prompt_len:].tolist())
        if not _wrote_no_answer(self.processor) and self.processor.first_step is not None:
            self.no_answer_logprobs = continuation_logprobs(
                model, output.past_key_values, prompt_len, self.processor.first_step,
                self.no_answer)


async def answer_extractive(engine: LocalEngine, messages: Sequence[dict[str, str]],
                            spec: Extractive, max_new_tokens: int,
                            adapter: str | None = None) -> ExtractiveAnswer:
    """Generate the constrained answer and decide between it and "don't know"."""
    import asyncio

    prompt = await asyncio.to_thread(engine.chat_prompt, messages)
    prompt_ids = await asyncio.to_thread(engine.encode, prompt)
    constraint = await asyncio.to_thread(
        build_constraint, engine.tokenizer, spec.passages, spec.no_answer, engine.end_ids,
        spec.max_span_tokens, spec.question)
    run = _Run(ConstrainedLogits(constraint, len(prompt_ids)), constraint.no_answer)
    params = SamplingParams(max_new_tokens=max(max_new_tokens,
                                               spec.max_span_tokens + MARKER_AND_END))
    completion = await engine.agenerate_raw(prompt, params, adapter,
                                            GenerationHooks((run.processor,), run.after))
    return decide(run, completion, spec)


def decide(run: _Run, completion: RawCompletion, spec: Extractive) -> ExtractiveAnswer:
    """The span, or "don't know" when the model wrote it or prefers it by the margin."""
    processor = run.processor
    if _wrote_no_answer(processor):
        return ExtractiveAnswer(spec.no_answer, True, completion, {"chose_no_answer": 1.0})
    span = _span_logprobs(processor)
    scores = {"span_first": span[0] if span else 0.0,
              "span_mean": sum(span) / len(span) if span else 0.0,
              "span_tokens": float(len(span)), "chose_no_answer": 0.0}
    if run.no_answer_logprobs:
        scores["no_answer_first"] = run.no_answer_logprobs[0]
        scores["no_answer_mean"] = sum(run.no_answer_logprobs) / len(run.no_answer_logprobs)
        scores["margin"] = scores["no_answer_first"] - scores["span_first"]
    text = completion.text.strip()
    if spec.abstain_margin is not None and scores.get("margin", float("-inf")) \
            > spec.abstain_margin:
        return ExtractiveAnswer(spec.no_answer, True, completion, scores)
    if not cited(processor.state):
        # Cut by max_new_tokens before the marker (not expected: the span is capped).
        return ExtractiveAnswer(text, False, completion, scores)
    return ExtractiveAnswer(text, False, completion, scores)


def _wrote_no_answer(processor: ConstrainedLogits) -> bool:
    return any(isinstance(t, Fixed) and t.kind == "no_answer" for t in processor.state.threads)


def _span_logprobs(processor: ConstrainedLogits) -> list[float]:
    """The unmasked log-probs of the span's tokens (the marker and end of turn left out)."""
    opener = processor.constraint.forbidden
    scores = []
    for token, logprob in zip(processor.chosen, processor.raw_logprobs, strict=False):
        if token in opener:
            break
        scores.append(logprob)
    return scores
