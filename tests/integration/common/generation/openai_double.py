"""TEST DOUBLE of an OpenAI-compatible server: ``POST /v1/chat/completions`` straight over the
local engine, so the ``openai`` backend can be tested against a real HTTP server and the real
``openai`` client.

This is not the gateway's OpenAI API (services/gateway/openai_routes.py answers through the RAG
pipeline over Kafka). It implements only what the backend uses: ``model`` as ``<base>`` or
``<base>:<adapter>``, ``messages``, ``max_tokens``, ``temperature``, ``stop``, ``stream``; an
unknown model or adapter is a 404 as OpenAI and vLLM answer it.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from services.common.generation.base import UnknownAdapter
from services.common.generation.engine_types import SamplingParams
from services.common.generation.local_engine import LocalEngine


def create_app(engine: LocalEngine, model: str = "local") -> FastAPI:
    app = FastAPI(title="OpenAI test double")

    @app.post("/v1/chat/completions", response_model=None)
    async def chat(request: Request) -> JSONResponse | StreamingResponse:
        body: dict[str, Any] = await request.json()
        base, _, adapter = str(body.get("model", "")).partition(":")
        if base != model:
            return _not_found(f"The model `{body.get('model')}` does not exist.")
        stop = body.get("stop") or []
        params = SamplingParams.chat(int(body.get("max_tokens") or 256),
                                     float(body.get("temperature") or 0.0),
                                     [stop] if isinstance(stop, str) else stop)
        try:
            if adapter:
                engine.adapters.resolve(adapter)
        except UnknownAdapter as exc:
            return _not_found(str(exc))
        name = body["model"]
        if body.get("stream"):
            pieces = engine.astream_chat(body["messages"], params, adapter or None)
            return StreamingResponse(_chunks(pieces, name), media_type="text/event-stream")
        result = await engine.agenerate_chat(body["messages"], params, adapter or None)
        return JSONResponse({
            "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion",
            "created": int(time.time()), "model": name,
            "choices": [{"index": 0, "finish_reason": result.finish_reason, "logprobs": None,
                         "message": {"role": "assistant", "content": result.text}}],
            "usage": {"prompt_tokens": result.prompt_tokens,
                      "completion_tokens": result.completion_tokens,
                      "total_tokens": result.prompt_tokens + result.completion_tokens},
        })

    return app


async def _chunks(pieces: AsyncIterator[str], model: str) -> AsyncIterator[str]:
    chunk_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

    def chunk(delta: dict[str, str], finish: str | None) -> str:
        return "data: " + json.dumps({
            "id": chunk_id, "object": "chat.completion.chunk", "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}) + "\n\n"

    async for piece in pieces:
        yield chunk({"role": "assistant", "content": piece}, None)
    yield chunk({}, "stop")
    yield "data: [DONE]\n\n"


def _not_found(message: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": "invalid_request_error",
                                   "param": "model", "code": "model_not_found"}},
                        status_code=404)
