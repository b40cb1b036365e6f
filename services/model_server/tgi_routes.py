"""TGI's model-server API over the local engine, so the real ``text_generation`` client (and
anything else that speaks TGI) can use the in-process model.

Routes, as TGI serves them: ``POST /generate`` (one JSON object), ``POST /generate_stream``
(server-sent events ``data:{...}`` per token, the last one with the text and details),
``POST /`` (what the ``text_generation`` client calls: a one-element list, or the stream when
``"stream": true``), ``GET /info`` and ``GET /health`` (503 until the model is loaded).

``inputs`` is a raw, already templated prompt. ``parameters.adapter_id`` selects a LoRA
adapter by name (as TGI multi-LoRA and LoRAX do). Errors use TGI's body,
``{"error": ..., "error_type": ...}``, because the client parses exactly that: 422
``validation`` for a bad request, 400 ``unknown_adapter`` (with ``available_adapters``),
503 while the model cannot be loaded. The router validates its own bodies instead of relying
on app-level exception handlers, so it behaves the same in whatever app mounts it.

Including the router starts loading the model in the background when the app starts.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import pydantic
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from services.common.generation.base import (
    MAX_STOP_SEQUENCES,
    GenerationError,
    InvalidGenerationRequest,
    UnknownAdapter,
)
from services.common.generation.engine_types import (
    RawCompletion,
    SamplingParams,
    StreamItem,
    TokenEvent,
)
from services.common.generation.local_engine import LocalEngine
from services.common.logs import log
from services.model_server import engine_state

logger = logging.getLogger(__name__)

DEFAULT_MAX_NEW_TOKENS = 100  # TGI's default when a request names none
SERVER_NAME = "customllm-model-server"


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    try:
        engine_state.load_in_background(engine_state.get_engine())
    except GenerationError as exc:  # no model configured: the app still serves its other routes
        log(logger, logging.ERROR, "TGI routes have no local model", error=str(exc)[:500])
    yield


router = APIRouter(tags=["tgi"], lifespan=_lifespan)
EngineDep = Annotated[LocalEngine, Depends(engine_state.get_engine)]


class GenerateParameters(BaseModel):
    """TGI's ``parameters``. Knobs this server cannot honour are refused, not ignored."""

    model_config = ConfigDict(extra="ignore")

    max_new_tokens: int | None = Field(default=None, ge=1)
    do_sample: bool = False
    temperature: float | None = Field(default=None, gt=0)
    top_k: int | None = Field(default=None, gt=0)
    top_p: float | None = Field(default=None, gt=0, lt=1)
    typical_p: float | None = Field(default=None, gt=0, lt=1)
    repetition_penalty: float | None = Field(default=None, gt=0)
    frequency_penalty: float | None = None
    seed: int | None = Field(default=None, ge=0)
    stop: list[str] = Field(default_factory=list, max_length=MAX_STOP_SEQUENCES)
    truncate: int | None = Field(default=None, gt=0)
    return_full_text: bool | None = False
    details: bool = False
    decoder_input_details: bool = False
    best_of: int | None = Field(default=None, ge=1)
    watermark: bool = False
    top_n_tokens: int | None = None
    grammar: Any = None
    adapter_id: str | None = None

    @pydantic.model_validator(mode="after")
    def _supported(self) -> GenerateParameters:
        refused = {
            "best_of > 1": (self.best_of or 1) > 1, "watermark": self.watermark,
            "grammar": self.grammar is not None, "top_n_tokens": self.top_n_tokens is not None,
            "frequency_penalty": self.frequency_penalty is not None,
        }
        if names := [name for name, used in refused.items() if used]:
            raise ValueError(f"not supported by this server: {', '.join(names)}")
        if any(not s for s in self.stop):
            raise ValueError("stop sequences must not be empty")
        return self

    def sampling(self) -> SamplingParams:
        """TGI's rule: any warper (temperature != 1, top-k, top-p, typical-p) means sampling."""
        temperature = 1.0 if self.temperature is None else self.temperature
        do_sample = (self.do_sample or temperature != 1.0 or self.top_k is not None
                     or self.top_p is not None or self.typical_p is not None)
        return SamplingParams(
            max_new_tokens=self.max_new_tokens or DEFAULT_MAX_NEW_TOKENS, do_sample=do_sample,
            temperature=temperature, top_k=self.top_k, top_p=self.top_p,
            typical_p=self.typical_p, repetition_penalty=self.repetition_penalty,
            seed=self.seed, stop=tuple(self.stop), truncate=self.truncate)


class GenerateRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    inputs: str = Field(min_length=1)
    parameters: GenerateParameters = Field(default_factory=GenerateParameters)
    stream: bool = False


# -- routes ----------------------------------------------------------------------------------


@router.post("/generate")
async def generate(request: Request, engine: EngineDep) -> JSONResponse:
    parsed = await _parse(request)
    if isinstance(parsed, JSONResponse):
        return parsed
    return await _generate(parsed, engine, as_list=False)


@router.post("/generate_stream", response_model=None)
async def generate_stream(request: Request,
                          engine: EngineDep) -> StreamingResponse | JSONResponse:
    parsed = await _parse(request)
    if isinstance(parsed, JSONResponse):
        return parsed
    return await _stream(parsed, engine)


@router.post("/", response_model=None)
async def compat_generate(request: Request,
                          engine: EngineDep) -> StreamingResponse | JSONResponse:
    """What the ``text_generation`` client posts to: ``stream`` picks the answer's form."""
    parsed = await _parse(request)
    if isinstance(parsed, JSONResponse):
        return parsed
    if parsed.stream:
        return await _stream(parsed, engine)
    return await _generate(parsed, engine, as_list=True)


@router.get("/info")
async def info(engine: EngineDep) -> JSONResponse:
    if (failed := await _ensure_loaded(engine)) is not None:
        return failed
    max_total = engine.max_total_tokens
    return JSONResponse({
        "model_id": engine.model_id, "model_sha": None, "model_dtype": engine.dtype,
        "model_device_type": "cpu", "model_pipeline_tag": "text-generation",
        "max_concurrent_requests": 1, "max_best_of": 1,
        "max_stop_sequences": MAX_STOP_SEQUENCES, "max_input_tokens": max_total - 1,
        "max_total_tokens": max_total, "validation_workers": 1, "max_client_batch_size": 1,
        "router": SERVER_NAME, "version": _version(), "sha": None, "docker_label": None,
        "adapters": engine.available_adapters(),
    })


@router.get("/health")
async def health(engine: EngineDep) -> JSONResponse:
    """200 once the model is loaded; 503 while it loads (or after it failed to)."""
    if engine.loaded:
        return JSONResponse({"status": "ok", "model_id": engine.model_id})
    reason = f"model failed to load: {engine.load_error}" if engine.load_error \
        else "model is loading"
    return _error(503, reason, "healthcheck")


# -- work ------------------------------------------------------------------------------------


async def _generate(body: GenerateRequest, engine: LocalEngine, as_list: bool) -> JSONResponse:
    if (failed := await _ensure_loaded(engine)) is not None:
        return failed
    params = body.parameters
    try:
        completion = await engine.agenerate_raw(body.inputs, params.sampling(),
                                                _adapter(params, engine))
    except GenerationError as exc:
        return _generation_error(exc)
    text = body.inputs + completion.text if params.return_full_text else completion.text
    payload: dict[str, Any] = {"generated_text": text}
    if params.details:
        payload["details"] = {
            **_details(completion),
            "prefill": _prefill(engine, completion) if params.decoder_input_details else [],
            "tokens": [_token(t) for t in completion.tokens],
            "top_tokens": None, "best_of_sequences": None,
        }
    return JSONResponse([payload] if as_list else payload)


async def _stream(body: GenerateRequest,
                  engine: LocalEngine) -> StreamingResponse | JSONResponse:
    """The first token is awaited before answering, so a request that fails up front (unknown
    adapter, prompt too long) gets a proper error status instead of a 200 stream."""
    if (failed := await _ensure_loaded(engine)) is not None:
        return failed
    params = body.parameters
    items = engine.astream_raw(body.inputs, params.sampling(), _adapter(params, engine))
    try:
        first = await anext(items)
    except GenerationError as exc:
        await items.aclose()
        return _generation_error(exc)

    async def events() -> AsyncIterator[str]:
        item: StreamItem | None = first
        index = 0
        try:
            while item is not None:
                index += 1
                yield _event(index, item, body, params.details)
                item = await anext(items, None)
        except GenerationError as exc:
            yield "data:" + json.dumps({"error": str(exc), "error_type": "generation"}) + "\n\n"
        finally:
            await items.aclose()  # a client that hung up stops the generation

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _event(index: int, item: StreamItem, body: GenerateRequest, details: bool) -> str:
    final = item.final
    text = None
    if final is not None:
        text = body.inputs + final.text if body.parameters.return_full_text else final.text
    event = {
        "index": index, "token": _token(item.token), "top_tokens": None,
        "generated_text": text,
        "details": _details(final) if final is not None and details else None,
    }
    return "data:" + json.dumps(event) + "\n\n"


def _adapter(params: GenerateParameters, engine: LocalEngine) -> str | None:
    """An empty id or the base model's id means the base model, as in TGI."""
    adapter = params.adapter_id
    return None if not adapter or adapter == engine.model_id else adapter


async def _ensure_loaded(engine: LocalEngine) -> JSONResponse | None:
    if engine.loaded:
        return None
    try:
        await asyncio.to_thread(engine.load)
    except GenerationError as exc:
        return _error(503, str(exc), "unavailable")
    return None


# -- bodies ----------------------------------------------------------------------------------


async def _parse(request: Request) -> GenerateRequest | JSONResponse:
    try:
        raw = await request.json()
    except ValueError:
        return _error(422, "the request body is not valid JSON", "validation")
    try:
        return GenerateRequest.model_validate(raw)
    except pydantic.ValidationError as exc:
        return _error(422, _describe(exc), "validation")


def _describe(exc: pydantic.ValidationError) -> str:
    problems = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        problems.append(f"{where}: {message}" if where else message)
    return "; ".join(problems)


def _details(completion: RawCompletion) -> dict[str, Any]:
    return {"finish_reason": completion.finish_reason,
            "generated_tokens": completion.completion_tokens, "seed": completion.seed}


def _token(token: TokenEvent) -> dict[str, Any]:
    return {"id": token.id, "text": token.text, "logprob": token.logprob,
            "special": token.special}


def _prefill(engine: LocalEngine, completion: RawCompletion) -> list[dict[str, Any]]:
    """The prompt's tokens. Their log-probabilities are not computed (the client's model allows
    null); the first one has none in TGI either."""
    texts = engine.tokenizer.batch_decode([[i] for i in completion.prompt_ids],
                                          clean_up_tokenization_spaces=False)
    return [{"id": i, "text": t, "logprob": None} for i, t in zip(completion.prompt_ids, texts,
                                                                   strict=True)]


def _generation_error(exc: GenerationError) -> JSONResponse:
    if isinstance(exc, UnknownAdapter):
        return _error(400, str(exc), "unknown_adapter",
                      available_adapters=list(exc.available))
    if isinstance(exc, InvalidGenerationRequest):
        return _error(422, str(exc), "validation")
    return _error(500, str(exc), "generation")


def _error(status: int, message: str, error_type: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, "error_type": error_type, **extra},
                        status_code=status)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("customllm")
    except PackageNotFoundError:
        return "0.0.0"
