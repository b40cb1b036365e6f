"""One extractive answer from the local engine: constrained decoding, then the abstention check.

The model writes under :class:`ConstrainedLogits`, so it can only copy a span and cite its
passage, or write the "don't know" text. Its first token is chosen against the "N/A"-question
prior (:mod:`services.common.generation.prior`), which picks better spans but also discounts
"don't know" (the model's favourite answer to "N/A"), so that choice rarely abstains. Whether
to answer is therefore decided on the model's *unadjusted* first step, which the same forward
pass already gave: "don't know" when its first token beats every allowed span start by more than
``abstain_margin`` (``decision`` in the scores). Greedy decoding without the prior abstains at
a margin of 0; the threshold is calibrated for few false "don't know"s. The whole "don't know"
text and the span are scored too (``no_answer_mean``, ``span_mean``), for analysis.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from services.common.generation.base import Extractive
from services.common.generation.constrained import ConstrainedLogits, continuation_logprobs
from services.common.generation.date_precision import widen_cited_year
from services.common.generation.engine_types import GenerationHooks, RawCompletion, SamplingParams
from services.common.generation.evidence import Fixed, cited
from services.common.generation.evidence_prompt import (
    FOCUS_SENTENCES,
    compact_messages,
    compact_passages,
)
from services.common.generation.evidence_tokens import build_constraint
from services.common.generation.local_engine import LocalEngine
from services.common.generation.prior import StartPrior, null_messages

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
        if self.no_answer and not _wrote_no_answer(self.processor) \
                and self.processor.first_step is not None:
            self.no_answer_logprobs = continuation_logprobs(
                model, output.past_key_values, prompt_len, self.processor.first_step,
                self.no_answer)


async def answer_extractive(engine: LocalEngine, messages: Sequence[dict[str, str]],
                            spec: Extractive, max_new_tokens: int,
                            adapter: str | None = None, *,
                            compact: bool = False) -> ExtractiveAnswer:
    """Generate the constrained answer and decide between it and "don't know".

    ``compact``: ask on the answer adapter's short prompt (the sentences about the question,
    :mod:`evidence_prompt`) instead of ``messages``, without the "N/A" prior (the adapter was
    trained without it); the constraint is built over the same sentences."""
    import asyncio

    passages = spec.passages
    focus_sentences = 2
    prior_weight = spec.prior_weight
    if compact and spec.question and spec.passages:
        focus_sentences, prior_weight = spec.focus_sentences or FOCUS_SENTENCES, 0.0
        passages = compact_passages(spec.question, spec.passages, focus_sentences)
        messages = compact_messages(spec.question, passages, spec.no_answer)
    prompt = await asyncio.to_thread(engine.chat_prompt, messages)
    prompt_ids = await asyncio.to_thread(engine.encode, prompt)
    constraint = await asyncio.to_thread(
        build_constraint, engine.tokenizer, passages, spec.no_answer, engine.end_ids,
        spec.max_span_tokens, spec.question, focus_sentences,
        compact and spec.question_words_inside)
    run = _Run(ConstrainedLogits(constraint, len(prompt_ids), prior_weight=prior_weight),
               constraint.no_answer)
    prepare = None
    nulls = null_messages(messages, spec.question) if prior_weight and spec.question \
        else None
    if nulls is not None:
        null_ids = await asyncio.to_thread(engine.encode,
                                           await asyncio.to_thread(engine.chat_prompt, nulls))
        prepare = StartPrior(null_ids, run.processor)
    params = SamplingParams(max_new_tokens=max(max_new_tokens,
                                               spec.max_span_tokens + MARKER_AND_END))
    completion = await engine.agenerate_raw(
        prompt, params, adapter, GenerationHooks((run.processor,), run.after, prepare))
    answer = decide(run, completion, spec)
    if not (compact and answer.abstained and spec.abstain_margin is not None
            and answer.scores.get("decision", float("inf")) <= spec.abstain_margin):
        return _at_date_precision(answer, spec, passages)
    # The adapter wrote "don't know" but not by the calibrated margin: its best span instead
    # (the margin decides both ways; the adapter alone says it too often on answerable ones).
    forced = _Run(ConstrainedLogits(dataclasses.replace(constraint, no_answer=()),
                                    len(prompt_ids)), ())
    again = await engine.agenerate_raw(prompt, params, adapter,
                                       GenerationHooks((forced.processor,), forced.after, None))
    span = decide(forced, again, dataclasses.replace(spec, abstain_margin=None))
    return _at_date_precision(
        ExtractiveAnswer(span.text, False, again, {**span.scores, **answer.scores,
                                                   "forced_span": 1.0}), spec, passages)


def _at_date_precision(answer: ExtractiveAnswer, spec: Extractive,
                       passages: Sequence[tuple[int, str]]) -> ExtractiveAnswer:
    """A bare year asked for as a date, widened to the date its passage writes
    (:mod:`date_precision`); ``passages`` are the ones the constraint copied from."""
    if answer.abstained or not spec.question or not spec.date_precision:
        return answer
    text = widen_cited_year(spec.question, answer.text, passages)
    if text == answer.text:
        return answer
    return dataclasses.replace(answer, text=text, scores={**answer.scores, "widened_year": 1.0})


def decide(run: _Run, completion: RawCompletion, spec: Extractive) -> ExtractiveAnswer:
    """The span, or "don't know" when the model wrote it or prefers it by the margin."""
    processor = run.processor
    if _wrote_no_answer(processor):
        scores = {"chose_no_answer": 1.0}
        choice = _choice_margin(processor, run.no_answer)
        if choice is not None:
            scores["decision"] = choice
        return ExtractiveAnswer(spec.no_answer, True, completion, scores)
    span = _span_logprobs(processor)
    scores = {"span_first": span[0] if span else 0.0,
              "span_mean": sum(span) / len(span) if span else 0.0,
              "span_tokens": float(len(span)), "chose_no_answer": 0.0}
    if run.no_answer_logprobs:
        scores["no_answer_first"] = run.no_answer_logprobs[0]
        scores["no_answer_mean"] = sum(run.no_answer_logprobs) / len(run.no_answer_logprobs)
        scores["margin"] = scores["no_answer_first"] - scores["span_first"]
        adjusted = processor.first_adjusted
        if adjusted is not None and processor.chosen:
            scores["margin_adjusted"] = float(adjusted[run.no_answer[0]]
                                              - adjusted[processor.chosen[0]])
    choice = _choice_margin(processor, run.no_answer)
    if choice is not None:
        scores["decision"] = choice
    if spec.abstain_margin is not None and scores.get("decision", float("-inf")) \
            > spec.abstain_margin:
        return ExtractiveAnswer(spec.no_answer, True, completion, scores)
    scores["cited"] = float(bool(cited(processor.state)))  # 0: cut before its marker
    return ExtractiveAnswer(completion.text.strip(), False, completion, scores)


def _choice_margin(processor: ConstrainedLogits, no_answer: tuple[int, ...]) -> float | None:
    """The model's own first-step preference, unadjusted: log p("don't know" first token) less
    the best log p of any allowed span start. Above 0, plain greedy decoding would abstain."""
    first = processor.first_step
    starts = processor.first_allowed - {no_answer[0]} if no_answer else frozenset()
    if first is None or not no_answer or not starts:
        return None
    return float(first[no_answer[0]]) - max(float(first[t]) for t in starts)


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
