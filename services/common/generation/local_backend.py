"""The ``local`` backend: the in-process :class:`LocalEngine` behind the backend protocol."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from services.common.generation.answer_adapter import (
    AnswerAdapter,
    answers_on_compact_prompt,
    focus_sentences,
    prompt_version,
    question_words_inside,
)
from services.common.generation.base import (
    Extractive,
    GenerationError,
    GenerationRequest,
    GenerationResult,
    UnknownAdapter,
)
from services.common.generation.engine_types import SamplingParams
from services.common.generation.evidence_prompt import PROMPT_VERSION
from services.common.generation.local_engine import LocalEngine
from services.common.logs import log

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ServedAnswerAdapter:
    """The served version of the answer adapter and the rules it was trained under."""

    name: str
    abstain_margin: float | None
    words_inside: bool  # spans may run through the question's words (its card)
    focus_sentences: int  # sentences of its compact prompt (its card)


def adapter_spec(spec: Extractive, served: ServedAnswerAdapter) -> Extractive:
    """The extractive request as the served adapter answers it: under the constraint rules of
    its card, and with its own calibrated margin. An adapter without one (a job continued from
    the answer adapter, before any calibration) takes the template's ``abstain_margin``, so a
    domain can still set one; with neither, only the adapter's own "don't know" counts."""
    margin = served.abstain_margin if served.abstain_margin is not None else spec.abstain_margin
    return dataclasses.replace(spec, abstain_margin=margin,
                               question_words_inside=served.words_inside,
                               focus_sentences=served.focus_sentences)


class LocalBackend:
    """Chat completions from the local engine. ``timeout_s`` bounds a whole ``generate`` call,
    waiting for the model included; on expiry the generation is stopped, not left running.
    ``stream`` has no deadline: its consumer decides, and leaving the loop stops generation.

    ``answer_adapter``: extractive requests that name no adapter are answered by it on its
    compact prompt (:mod:`services.common.generation.answer_adapter`), when the adapters
    directory serves it; otherwise by the base model under the constraint. ``install`` runs at
    warm-up (registers and promotes the shipped adapter)."""

    name = "local"
    constrains = True  # honours GenerationRequest.extractive

    def __init__(self, engine: LocalEngine, timeout_s: float | None = None,
                 answer_adapter: AnswerAdapter | None = None,
                 install: Callable[[], object] | None = None) -> None:
        self.engine = engine
        self.timeout_s = timeout_s
        self.answer_adapter = answer_adapter
        self.install = install
        self._refused: set[Path] = set()  # versions already warned about (wrong prompt)

    def warm_up(self) -> None:
        """Load the model (and the answer adapter) and run one tiny generation: the first call
        into torch pays for allocating and tuning its kernels, which the first user question
        should not."""
        if self.install is not None:
            self.install()
        self.engine.load()
        adapter = self.default_adapter()
        self.engine.generate_chat([{"role": "user", "content": "Hi"}],
                                  SamplingParams(max_new_tokens=2), adapter)

    def default_adapter(self) -> str | None:
        """The answer adapter's name when the adapters directory serves it, else None."""
        served = self._served_answer_adapter()
        return None if served is None else served.name

    def _served_answer_adapter(self) -> ServedAnswerAdapter | None:
        """The answer adapter as served now: its margin and constraint follow the promoted
        version, which a person may change while the worker runs. None also for a version
        trained on a compact prompt this server no longer builds."""
        if self.answer_adapter is None:
            return None
        try:
            folder = self.engine.adapters.resolve(self.answer_adapter.name)
        except UnknownAdapter:
            return None
        trained_on = prompt_version(folder.path)
        if trained_on != PROMPT_VERSION:
            if folder.path not in self._refused:
                self._refused.add(folder.path)
                log(logger, logging.WARNING, "answer adapter version trained on another "
                    "prompt; the base model answers under the constraint",
                    adapter=self.answer_adapter.name, path=str(folder.path),
                    trained_on=trained_on, served=PROMPT_VERSION)
            return None
        return ServedAnswerAdapter(self.answer_adapter.name,
                                   self.answer_adapter.margin_for(folder.path),
                                   question_words_inside(folder.path),
                                   focus_sentences(folder.path))

    def _named_answer_adapter(self, name: str) -> ServedAnswerAdapter | None:
        """A requested adapter that learnt the compact prompt (the answer adapter, or a job
        continued from it) is served on that prompt, under the constraint its card records;
        any other is served on the full prompt. Its abstention margin is its own calibrated
        one (its gate.json); without one, the template's (``adapter_spec``)."""
        if self.answer_adapter is not None and name == self.answer_adapter.name:
            return self._served_answer_adapter()  # the default one, with its settings
        try:
            folder = self.engine.adapters.resolve(name)
        except UnknownAdapter:
            return None  # the generation call says so, with the adapters there are
        if folder.kind != "adapter" or not answers_on_compact_prompt(folder.path):
            return None
        own = AnswerAdapter(name, None, per_version_margin=True)  # its gate.json's, or none
        return ServedAnswerAdapter(name, own.margin_for(folder.path),
                                   question_words_inside(folder.path),
                                   focus_sentences(folder.path))

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        try:
            return await asyncio.wait_for(self._generate(request), self.timeout_s)
        except TimeoutError as exc:
            raise GenerationError(
                f"local engine timed out after {self.timeout_s:g} s "
                f"(max_tokens={request.max_tokens}); raise generation_timeout_s or lower "
                "max_tokens") from exc

    async def _generate(self, request: GenerationRequest) -> GenerationResult:
        if request.extractive is not None:
            from services.common.generation.extractive import answer_extractive

            spec, adapter, compact = request.extractive, request.adapter, False
            served = None
            if adapter is None and self.answer_adapter is not None:
                served = await asyncio.to_thread(self._served_answer_adapter)
            elif adapter is not None:
                served = await asyncio.to_thread(self._named_answer_adapter, adapter)
            if served is not None:
                adapter, compact = served.name, True
                spec = adapter_spec(spec, served)
            try:
                answer = await answer_extractive(self.engine, request.messages, spec,
                                                 request.max_tokens, adapter, compact=compact)
            except GenerationError as exc:
                if not compact or request.adapter is not None:
                    raise  # a named adapter answers or fails; only the default falls back
                log(logger, logging.WARNING, "answer adapter failed; base model answers",
                    adapter=adapter, error=str(exc)[:300])
                adapter, compact = None, False
                answer = await answer_extractive(self.engine, request.messages,
                                                 request.extractive, request.max_tokens)
            return GenerationResult(
                text=answer.text, prompt_tokens=len(answer.completion.prompt_ids),
                completion_tokens=answer.completion.completion_tokens,
                model=self.engine.model_id, adapter=adapter, finish_reason="stop",
                abstained=answer.abstained, scores=answer.scores)
        params = SamplingParams.chat(request.max_tokens, request.temperature, request.stop)
        completion = await self.engine.agenerate_chat(request.messages, params, request.adapter)
        return GenerationResult(
            text=completion.text, prompt_tokens=completion.prompt_tokens,
            completion_tokens=completion.completion_tokens, model=self.engine.model_id,
            adapter=request.adapter, finish_reason=completion.finish_reason)

    async def stream(self, request: GenerationRequest) -> AsyncIterator[str]:
        if request.extractive is not None:  # a short answer decided as a whole: one piece
            yield (await self.generate(request)).text
            return
        params = SamplingParams.chat(request.max_tokens, request.temperature, request.stop)
        stream = self.engine.astream_chat(request.messages, params, request.adapter)
        try:
            async for piece in stream:
                yield piece
        finally:
            await stream.aclose()
