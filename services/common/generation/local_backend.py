"""The ``local`` backend: the in-process :class:`LocalEngine` behind the backend protocol."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from services.common.generation.base import GenerationError, GenerationRequest, GenerationResult
from services.common.generation.engine_types import SamplingParams
from services.common.generation.local_engine import LocalEngine


class LocalBackend:
    """Chat completions from the local engine. ``timeout_s`` bounds a whole ``generate`` call,
    waiting for the model included; on expiry the generation is stopped, not left running.
    ``stream`` has no deadline: its consumer decides, and leaving the loop stops generation."""

    name = "local"
    constrains = True  # honours GenerationRequest.extractive

    def __init__(self, engine: LocalEngine, timeout_s: float | None = None) -> None:
        self.engine = engine
        self.timeout_s = timeout_s

    def warm_up(self) -> None:
        """Load the model and run one tiny generation: the first call into torch pays for
        allocating and tuning its kernels, which the first user question should not."""
        self.engine.load()
        self.engine.generate_chat([{"role": "user", "content": "Hi"}],
                                  SamplingParams(max_new_tokens=2))

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

            answer = await answer_extractive(self.engine, request.messages, request.extractive,
                                             request.max_tokens, request.adapter)
            return GenerationResult(
                text=answer.text, prompt_tokens=len(answer.completion.prompt_ids),
                completion_tokens=answer.completion.completion_tokens,
                model=self.engine.model_id, adapter=request.adapter, finish_reason="stop",
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
