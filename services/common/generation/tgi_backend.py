"""The ``tgi`` backend: a text-generation-inference server (or the gateway's TGI routes).

TGI's ``/generate`` takes a raw prompt, so the chat is rendered here with ChatML, and
``<|im_end|>`` is sent as a stop sequence in case the server's EOS is another token. TGI keeps a
matched stop sequence in its text; the answer is cut before it, in ``generate`` and ``stream``
alike.

Adapters: TGI (multi-LoRA) and LoRAX select one with ``parameters.adapter_id``, which the
``text-generation`` 0.7 client cannot send. Requests without an adapter go through the client;
requests with one are posted with the client's own request/response models plus that field.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pydantic
import requests
from text_generation import AsyncClient
from text_generation import errors as tgi_errors
from text_generation.types import FinishReason, Parameters, Request, Response, StreamResponse

from services.common.generation.base import (
    MAX_STOP_SEQUENCES,
    GenerationError,
    GenerationRequest,
    GenerationResult,
    UnknownAdapter,
)
from services.common.generation.chatml import IM_END, render_chatml
from services.common.generation.stops import StopBuffer, truncate_at_stop
from services.common.logs import log

logger = logging.getLogger(__name__)

_CLIENT_ERRORS = (
    tgi_errors.ValidationError, tgi_errors.GenerationError, tgi_errors.OverloadedError,
    tgi_errors.IncompleteGenerationError, tgi_errors.BadRequestError,
    tgi_errors.ShardNotReadyError, tgi_errors.ShardTimeoutError, tgi_errors.NotFoundError,
    tgi_errors.RateLimitExceededError, tgi_errors.UnknownError,
)
CHARS_PER_TOKEN_ESTIMATE = 4


def stop_sequences(request: GenerationRequest) -> list[str]:
    """The request's stop sequences plus ChatML's end of turn, within TGI's default limit (the
    end of turn is dropped first: the model's EOS usually ends the turn anyway)."""
    stops = list(dict.fromkeys((*request.stop, IM_END)))
    return stops[:MAX_STOP_SEQUENCES]


def sampling(request: GenerationRequest) -> dict[str, Any]:
    """TGI samples as soon as a temperature is sent, so greedy sends none."""
    if request.temperature > 0:
        return {"do_sample": True, "temperature": request.temperature}
    return {"do_sample": False}


class TgiBackend:
    """``generate`` asks for ``decoder_input_details`` so the prompt's tokens are counted by
    the server's tokenizer (the ``prefill`` list). A server that sends no prefill gets its
    prompt tokens *estimated* at one per four characters."""

    name = "tgi"

    def __init__(self, url: str, timeout_s: float = 120.0, model: str | None = None,
                 api_key: str | None = None) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self.model = model or f"tgi@{self.url}"
        # The platform's own model server (and most TGI deployments behind a proxy) wants a
        # bearer key; the key is never logged or put in the model name.
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = AsyncClient(self.url, headers=self._headers,  # type: ignore[arg-type]
                                   timeout=timeout_s)

    def warm_up(self) -> None:
        """Learn the served model's id from ``/info``. A server that is not up yet is only
        logged: it may well start after this worker, and each request reports its own error."""
        try:
            info = requests.get(f"{self.url}/info", headers=self._headers,
                                timeout=min(self.timeout_s, 10.0))
            info.raise_for_status()
            self.model = str(info.json().get("model_id") or self.model)
        except (requests.RequestException, ValueError) as exc:
            log(logger, logging.WARNING, "TGI server not answering /info yet", url=self.url,
                error=str(exc)[:200])

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        prompt = render_chatml(request.messages)
        stops = stop_sequences(request)
        try:
            if request.adapter is None:
                response = await self._client.generate(
                    prompt, max_new_tokens=request.max_tokens, stop_sequences=stops,
                    decoder_input_details=True, **sampling(request))
            else:
                response = await self._generate_with_adapter(prompt, request, stops)
        except Exception as exc:  # noqa: BLE001 - translated below; anything else re-raised
            raise self._translate(exc, request) from exc
        text, _ = truncate_at_stop(response.generated_text, stops)
        details = response.details
        prompt_tokens = len(details.prefill) or max(1, len(prompt) // CHARS_PER_TOKEN_ESTIMATE)
        return GenerationResult(
            text=text, prompt_tokens=prompt_tokens, completion_tokens=details.generated_tokens,
            model=self.model, adapter=request.adapter,
            finish_reason="length" if details.finish_reason == FinishReason.Length else "stop")

    async def stream(self, request: GenerationRequest) -> AsyncIterator[str]:
        prompt = render_chatml(request.messages)
        stops = stop_sequences(request)
        buffer = StopBuffer(stops)
        if request.adapter is None:
            source = self._client.generate_stream(
                prompt, max_new_tokens=request.max_tokens, stop_sequences=stops,
                **sampling(request))
        else:
            source = self._stream_with_adapter(prompt, request, stops)
        try:
            async for response in source:
                if response.token.special:
                    continue
                if piece := buffer.feed(response.token.text):
                    yield piece
                if buffer.stopped:
                    return
            if tail := buffer.flush():
                yield tail
        except Exception as exc:  # noqa: BLE001 - translated below; anything else re-raised
            raise self._translate(exc, request) from exc
        finally:
            await source.aclose()

    # -- adapter requests (fields the 0.7 client cannot send) --------------------------------

    def _payload(self, prompt: str, request: GenerationRequest, stops: list[str],
                 stream: bool) -> dict[str, Any]:
        parameters = Parameters(max_new_tokens=request.max_tokens, stop=stops, details=True,
                                decoder_input_details=not stream, **sampling(request))
        payload = Request(inputs=prompt, stream=stream, parameters=parameters).model_dump()
        payload["parameters"]["adapter_id"] = request.adapter
        return payload

    async def _generate_with_adapter(self, prompt: str, request: GenerationRequest,
                                     stops: list[str]) -> Response:
        async with self._session() as session, session.post(
                f"{self.url}/generate",
                json=self._payload(prompt, request, stops, stream=False)) as resp:
            body = await resp.json(content_type=None)
            if resp.status != 200:
                raise self._server_error(resp.status, body, request)
            return Response(**body)

    async def _stream_with_adapter(self, prompt: str, request: GenerationRequest,
                                   stops: list[str]) -> AsyncIterator[StreamResponse]:
        async with self._session() as session, session.post(
                f"{self.url}/generate_stream",
                json=self._payload(prompt, request, stops, stream=True)) as resp:
            if resp.status != 200:
                raise self._server_error(resp.status, await resp.json(content_type=None),
                                         request)
            async for line in resp.content:
                text = line.decode("utf-8").strip()
                if not text.startswith("data:"):
                    continue
                event = json.loads(text[len("data:"):])
                if "error" in event:
                    raise self._server_error(resp.status, event, request)
                yield StreamResponse(**event)

    def _session(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(headers=self._headers,
                                     timeout=aiohttp.ClientTimeout(total=self.timeout_s))

    def _server_error(self, status: int, body: Any, request: GenerationRequest) -> Exception:
        body = body if isinstance(body, dict) else {}
        message = str(body.get("error") or body)[:500]
        if body.get("error_type") == "unknown_adapter" and request.adapter is not None:
            return UnknownAdapter(request.adapter, body.get("available_adapters"),
                                  f"TGI at {self.url}")
        return GenerationError(f"TGI at {self.url} refused the request ({status}): {message}")

    # -- errors ------------------------------------------------------------------------------

    def _translate(self, exc: Exception, request: GenerationRequest) -> GenerationError:
        """The client's and aiohttp's exceptions as our own, with the server named."""
        if isinstance(exc, GenerationError):
            return exc
        if isinstance(exc, TimeoutError):
            return GenerationError(f"TGI at {self.url} timed out after {self.timeout_s:g} s")
        if isinstance(exc, aiohttp.ClientConnectionError):
            return GenerationError(f"TGI at {self.url} is unreachable: {exc}")
        if isinstance(exc, _CLIENT_ERRORS):
            return GenerationError(f"TGI at {self.url} refused the request "
                                   f"({type(exc).__name__}): {exc}")
        if isinstance(exc, (aiohttp.ClientError, pydantic.ValidationError, KeyError,
                            ValueError)):
            return GenerationError(
                f"TGI at {self.url} gave an answer this client cannot read "
                f"({type(exc).__name__}): {str(exc)[:300]}")
        raise exc
