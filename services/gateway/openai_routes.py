"""OpenAI-compatible routes: a chat completion becomes a RAG request over Kafka.

The answer's citations come back in a ``citations`` field and the platform's metadata (cache,
latency per stage, guardrail decisions, trace id) in a ``customllm`` field; OpenAI clients
ignore both unless they look for them.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import StreamingResponse
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from services.common import identity
from services.common.events import RagFilters, RagOptions, RagReply, RagRequest
from services.common.exceptions import ContractError
from services.common.rpc import ReplyTimeout, new_request_id
from services.gateway.deps import Caller, CallerDep, StateDep
from services.gateway.model_names import available_adapters, split_model
from services.gateway.models import (
    ChatCompletion,
    ChatCompletionRequest,
    Choice,
    CustomLLMInfo,
    ModelCard,
    ModelList,
    ResponseMessage,
    UsageBody,
)

router = APIRouter(prefix="/v1", tags=["openai"])
# The limits of schemas/rag-request.v1.json (history maxItems, question and content maxLength).
MAX_HISTORY_TURNS = 50
MAX_QUESTION_CHARS = 8000
MAX_TURN_CHARS = 16000
tracer = trace.get_tracer(__name__)


@router.get("/models", response_model=ModelList)
def list_models(state: StateDep, _caller: CallerDep) -> ModelList:
    base = state.settings.local_model_id
    cards = [ModelCard(id=base)] + [ModelCard(id=f"{base}:{name}", parent=base)
                                    for name in available_adapters(state.settings)]
    return ModelList(data=cards)


@router.post("/chat/completions", response_model=ChatCompletion)
async def chat_completions(body: ChatCompletionRequest, state: StateDep,
                           caller: CallerDep) -> ChatCompletion | StreamingResponse:
    request = _to_rag_request(body, caller, state.settings.local_model_id)
    principal = caller.identity.principal
    if state.inflight.locked():
        raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS,
                            "too many requests in flight; retry shortly",
                            headers={"Retry-After": "1"})
    if state.client is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "gateway is starting")
    async with state.inflight:
        # The root of the question's trace: every stage joins it through Kafka headers.
        with tracer.start_as_current_span(
            "gateway.chat_completions", kind=SpanKind.SERVER,
            attributes={"request.id": request.request_id, "principal.id": principal.id,
                        "http.route": "/v1/chat/completions"}):
            try:
                reply = await state.client.arequest(request, state.config.rag_reply_timeout_s)
            except ReplyTimeout as exc:
                raise HTTPException(status.HTTP_504_GATEWAY_TIMEOUT, str(exc)) from exc
            except ContractError as exc:  # beyond a limit of the request topic's schema
                raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
    _raise_for_error(reply)
    completion = _to_completion(reply, body.model)
    if body.stream:
        return StreamingResponse(_stream(completion), media_type="text/event-stream")
    return completion


def _to_rag_request(body: ChatCompletionRequest, caller: Caller,
                    base_model: str) -> RagRequest:
    turns = [m for m in body.messages if m.role in ("user", "assistant")]
    if not turns or turns[-1].role != "user" or not turns[-1].text().strip():
        raise HTTPException(status.HTTP_400_BAD_REQUEST,
                            "the last message must be a non-empty user message")
    _check_lengths(turns)
    try:
        domain = caller.identity.domain_for(body.domain)
    except identity.Forbidden as exc:
        raise HTTPException(status.HTTP_403_FORBIDDEN, str(exc)) from exc
    adapter = split_model(body.model, base_model)
    history = [{"role": m.role, "content": m.text()} for m in turns[:-1]]
    options = RagOptions(
        adapter=adapter, top_k=body.top_k, filters=body.filters or RagFilters(),
        max_tokens=body.max_completion_tokens or body.max_tokens,
        temperature=body.temperature, stream=body.stream, retrieval_only=body.retrieval_only,
        use_cache=body.use_cache, domain=domain)
    # reply_to is set by the reply client (the gateway's private reply topic).
    return RagRequest(request_id=new_request_id(), reply_to="rag.replies.pending",
                      question=turns[-1].text(), history=history,
                      credential=caller.credential, options=options)


def _check_lengths(turns: list) -> None:
    """The request topic's schema limits, answered at the edge as 422 with the reason instead
    of an error from deep inside the pipeline."""
    if len(turns) - 1 > MAX_HISTORY_TURNS:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            f"at most {MAX_HISTORY_TURNS + 1} user/assistant messages")
    if len(turns[-1].text()) > MAX_QUESTION_CHARS:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            f"the question is longer than {MAX_QUESTION_CHARS} characters")
    if any(len(turn.text()) > MAX_TURN_CHARS for turn in turns[:-1]):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            f"a history message is longer than {MAX_TURN_CHARS} characters")


ERROR_STATUS = {
    "unauthenticated": status.HTTP_401_UNAUTHORIZED,
    "forbidden": status.HTTP_403_FORBIDDEN,
    "unknown_adapter": status.HTTP_404_NOT_FOUND,
    "schema_violation": status.HTTP_400_BAD_REQUEST,
    "too_large": status.HTTP_413_CONTENT_TOO_LARGE,
}


def _raise_for_error(reply: RagReply) -> None:
    if reply.status != "error":
        return
    error = reply.error or "the request failed"
    code = reply.error_code
    if code is None and "UnknownAdapter" in error:  # replies from workers before error codes
        code = "unknown_adapter"
    raise HTTPException(ERROR_STATUS.get(code or "", status.HTTP_502_BAD_GATEWAY), error)


def _to_completion(reply: RagReply, model: str) -> ChatCompletion:
    refused = reply.status == "refused"
    return ChatCompletion(
        id=f"chatcmpl-{reply.request_id}", created=int(time.time()), model=model,
        choices=[Choice(message=ResponseMessage(content=reply.answer,
                                                refusal=reply.answer if refused else None),
                        finish_reason="content_filter" if refused else "stop")],
        usage=UsageBody(prompt_tokens=reply.usage.prompt_tokens,
                        completion_tokens=reply.usage.completion_tokens,
                        total_tokens=reply.usage.prompt_tokens + reply.usage.completion_tokens),
        citations=reply.citations,
        customllm=CustomLLMInfo(
            request_id=reply.request_id, status=reply.status, cached=reply.cached,
            cache_kind=reply.cache_kind, latency_ms=reply.latency_ms,
            guardrails=[d.model_dump() for d in reply.guardrails],
            template_version=reply.template_version, trace_id=reply.trace_id,
            adapter=reply.adapter, cost_usd=reply.usage.cost_usd,
            adapter_version=reply.adapter_version),
    )


async def _stream(completion: ChatCompletion) -> AsyncIterator[str]:
    """Server-sent chunks in OpenAI's format. The answer is complete when it leaves the output
    guardrails (they must see all of it), so the pieces are streamed from the final text."""
    base = {"id": completion.id, "object": "chat.completion.chunk",
            "created": completion.created, "model": completion.model}
    text = completion.choices[0].message.content
    first = {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                  "finish_reason": None}]}
    yield f"data: {json.dumps(first)}\n\n"
    for piece in _pieces(text):
        chunk = {**base, "choices": [{"index": 0, "delta": {"content": piece},
                                      "finish_reason": None}]}
        yield f"data: {json.dumps(chunk)}\n\n"
    last = {**base, "choices": [{"index": 0, "delta": {},
                                 "finish_reason": completion.choices[0].finish_reason}],
            "usage": completion.usage.model_dump(),
            "citations": [c.model_dump() for c in completion.citations],
            "customllm": completion.customllm.model_dump()}
    yield f"data: {json.dumps(last)}\n\n"
    yield "data: [DONE]\n\n"


def _pieces(text: str, size: int = 16) -> list[str]:
    return [text[i:i + size] for i in range(0, len(text), size)]
