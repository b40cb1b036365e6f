"""Dead-lettering from a Faust agent: the error policy every stream processor shares."""

from __future__ import annotations

import logging

import faust
from faust.types import EventT

from services.common import metrics
from services.common.exceptions import InvalidEvent
from services.common.logs import log
from services.common.messages import dlq_record

logger = logging.getLogger(__name__)


async def send_to_dlq(dlq_topic: faust.TopicT, event: EventT, error: InvalidEvent,
                      service: str) -> None:
    """Wait for the broker's ack before the source event is acked, so a crash in between
    re-delivers the message instead of losing it."""
    message = event.message
    record = dlq_record(topic=message.topic, partition=message.partition, offset=message.offset,
                        key=message.key, value=message.value, error=error, service=service)
    await (await dlq_topic.send(key=message.key, value=record.to_json()))
    metrics.instruments()["dlq"].add(  # type: ignore[attr-defined]
        1, {"service": service, "error_type": error.error_type})
    log(logger, logging.WARNING, "message sent to DLQ", service=service, topic=message.topic,
        offset=message.offset, error_type=error.error_type, reason=error.reason[:200])
