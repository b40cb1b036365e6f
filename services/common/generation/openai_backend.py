"""The ``openai`` backend: any OpenAI-compatible chat server (vLLM, TGI's Messages API, OpenAI).

An adapter is addressed as a model name, ``<model>:<adapter>``, the convention of the gateway's
OpenAI surface; vLLM serves LoRA adapters as models too (under the name they were registered
with), so a deployment names them accordingly.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import openai

from services.common.generation.base import (
    GenerationError,
    GenerationRequest,
    GenerationResult,
    UnknownAdapter,
)

CHARS_PER_TOKEN_ESTIMATE = 4


class OpenAIBackend:
    """No retries in the client: the rag worker answers every request once, and a request the
    server dropped is better reported than silently paid for twice. Servers that send no
    ``usage`` get token counts *estimated* at one per four characters."""

    name = "openai"

    def __init__(self, base_url: str, api_key: str, model: str,
                 timeout_s: float = 120.0) -> None:
        self.base_url = base_url
        self.model = model
        self.timeout_s = timeout_s
        self._client = openai.AsyncOpenAI(base_url=base_url, api_key=api_key,
                                          timeout=timeout_s, max_retries=0)

    def warm_up(self) -> None:
        """Nothing to load; the HTTP connection is opened by the first request."""

    def model_for(self, adapter: str | None) -> str:
        return self.model if adapter is None else f"{self.model}:{adapter}"

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        try:
            response = await self._client.chat.completions.create(
                **self._arguments(request), stream=False)
        except openai.OpenAIError as exc:
            raise self._translate(exc, request) from exc
        if not response.choices:
            raise GenerationError(f"OpenAI server at {self.base_url} returned no choices")
        choice = response.choices[0]
        text = choice.message.content or ""
        usage = response.usage
        prompt_chars = sum(len(m["content"]) for m in request.messages)
        return GenerationResult(
            text=text,
            prompt_tokens=usage.prompt_tokens if usage else _estimate(prompt_chars),
            completion_tokens=usage.completion_tokens if usage else _estimate(len(text)),
            model=response.model or self.model_for(request.adapter), adapter=request.adapter,
            finish_reason="length" if choice.finish_reason == "length" else "stop")

    async def stream(self, request: GenerationRequest) -> AsyncIterator[str]:
        try:
            chunks = await self._client.chat.completions.create(
                **self._arguments(request), stream=True)
            async with chunks:
                async for chunk in chunks:
                    if chunk.choices and (piece := chunk.choices[0].delta.content):
                        yield piece
        except openai.OpenAIError as exc:
            raise self._translate(exc, request) from exc

    def _arguments(self, request: GenerationRequest) -> dict[str, Any]:
        arguments: dict[str, Any] = {
            "model": self.model_for(request.adapter), "messages": request.messages,
            "max_tokens": request.max_tokens, "temperature": request.temperature,
        }
        if request.stop:
            arguments["stop"] = list(request.stop)
        return arguments

    def _translate(self, exc: openai.OpenAIError, request: GenerationRequest) -> GenerationError:
        where = f"OpenAI server at {self.base_url}"
        if isinstance(exc, openai.APITimeoutError):
            return GenerationError(f"{where} timed out after {self.timeout_s:g} s")
        if isinstance(exc, openai.APIConnectionError):
            return GenerationError(f"{where} is unreachable: {exc}")
        if isinstance(exc, openai.NotFoundError) and request.adapter is not None:
            # How OpenAI-compatible servers answer a model (here: adapter) they do not serve.
            return UnknownAdapter(request.adapter, None,
                                  f"{where} does not serve {self.model_for(request.adapter)!r}")
        if isinstance(exc, openai.APIStatusError):
            return GenerationError(f"{where} refused the request ({exc.status_code}): "
                                   f"{str(exc.message)[:500]}")
        return GenerationError(f"{where}: {exc}")


def _estimate(chars: int) -> int:
    return max(1, chars // CHARS_PER_TOKEN_ESTIMATE)
