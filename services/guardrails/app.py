"""The guardrails stream processor: ``rag.requests`` → ``rag.screened`` (input stage) and
``rag.drafts`` → each request's ``reply_to`` topic (output stage).

Run it with ``python -m services.guardrails``.
"""

from __future__ import annotations

import functools

import faust
from faust.types import EventT
from opentelemetry.trace import SpanKind

from services.common import kafka_admin, telemetry
from services.common.config import get_settings
from services.common.dlq import send_to_dlq
from services.common.exceptions import InvalidEvent
from services.common.streaming import make_app
from services.common.topics import RAG_DRAFTS, RAG_REQUESTS, RAG_REQUESTS_DLQ, RAG_SCREENED
from services.guardrails import handlers
from services.guardrails.config import APP_ID, SERVICE_NAME

settings = get_settings()
app = make_app(APP_ID, settings)
tracer = telemetry.tracer(__name__)

requests_topic = app.topic(RAG_REQUESTS)
screened_topic = app.topic(RAG_SCREENED)
drafts_topic = app.topic(RAG_DRAFTS)
dlq_topic = app.topic(RAG_REQUESTS_DLQ)


@app.agent(requests_topic)
async def input_stage(stream: faust.StreamT) -> None:
    async for event in stream.events():
        await screen(event)


async def screen(event: EventT) -> None:
    message = event.message
    with tracer.start_as_current_span("guardrails.input", kind=SpanKind.CONSUMER,
                                      context=telemetry.extract_context(message.headers)):
        try:
            request = handlers.screen_request(message.value)
            if not reply_topic_exists(request.reply_to):
                raise InvalidEvent("schema_violation",
                                   f"reply_to topic {request.reply_to!r} does not exist")
        except InvalidEvent as error:
            await send_to_dlq(dlq_topic, event, error, SERVICE_NAME)
            routed = handlers.error_reply_for(message.value, error)
            if routed is not None:
                await _send_reply(*routed)
            return
        await (await screened_topic.send(key=request.request_id.encode(),
                                         value=request.to_json(),
                                         headers=telemetry.inject_headers()))


@app.agent(drafts_topic)
async def output_stage(stream: faust.StreamT) -> None:
    async for event in stream.events():
        message = event.message
        with tracer.start_as_current_span("guardrails.output", kind=SpanKind.CONSUMER,
                                          context=telemetry.extract_context(message.headers)):
            try:
                reply_to, reply = handlers.finalize_draft(message.value)
            except InvalidEvent as error:
                await send_to_dlq(dlq_topic, event, error, SERVICE_NAME)
                continue
            await _send_reply(reply_to, reply)


_known_topics: set[str] = set()


def reply_topic_exists(topic: str) -> bool:
    """Sending to a missing topic would block the stage until a timeout; check once, remember
    topics that exist (they are never deleted while we run)."""
    if topic in _known_topics:
        return True
    info = _admin().list_topics(topic, timeout=10).topics.get(topic)
    if info is None or info.error is not None:
        return False
    _known_topics.add(topic)
    return True


@functools.cache
def _admin() -> kafka_admin.AdminClient:
    return kafka_admin.admin(settings.kafka_bootstrap)


async def _send_reply(reply_to: str, reply: handlers.RagReply) -> None:
    # Reply topics are named by the requester; they must exist (auto-creation is off).
    topic = app.topic(reply_to)
    await (await topic.send(key=reply.request_id.encode(), value=reply.to_json(),
                            headers=telemetry.inject_headers()))
