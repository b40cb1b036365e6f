"""The one stream-processor shape every worker uses, and the one error policy they share.

A service describes a processor (its source topic, its dead-letter topic, a ``process``
coroutine that turns one message into an :data:`Outcome`, and what a requester is told when its
message is dead-lettered); :func:`attach` turns that into a Faust agent. The agent owns
everything the services used to write four different ways:

* **Data errors** (:class:`InvalidEvent`: too large, not JSON, schema, bad signature...) go to
  the dead-letter topic with the reason and the original payload, and the requester, if the
  message names one, gets an error reply. The stream moves on.
* **Signed hand-offs** (a processor declared with ``signed_by``): the message is decoded and its
  signature, signer, age and first delivery are checked here, once, before ``process`` sees it
  (as ``Inbound.payload``). Once, because a retry of ``process`` after a bug must not look like
  a replay; here, so no stage can forget the check or do it after acting on the message.
* **Infrastructure errors** (the database or the broker unreachable) are retried with
  exponential backoff; when they persist the exception reaches Faust's agent-error hook, which
  exits the worker (see ``streaming.exit_on_agent_error``) with the offset *not* committed, so
  the restarted worker reads the same message again. Nothing is lost, nothing is skipped.
* **Anything else** is a bug meeting an input. It is retried a few times at the same offset
  (a race may clear); then the message is dead-lettered as ``processing_error`` with the
  exception, and the requester gets an error reply. One poison message never crash-loops a
  worker, and never silently vanishes either.

``process`` returns what should happen instead of doing it, so the policy (and a test) sees
every decision, and the sends happen in one place, each awaited for the broker's ack before
the source offset can be committed.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import faust
from faust.types import EventT
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from services.common import handoff, metrics, telemetry
from services.common.exceptions import InvalidEvent
from services.common.logs import log
from services.common.messages import decode_json, dlq_record
from services.common.topics import spec

logger = logging.getLogger(__name__)
tracer = telemetry.tracer(__name__)


@dataclass(frozen=True)
class Inbound:
    """One consumed message, detached from Faust so ``process`` functions stay plain."""

    topic: str
    partition: int | None
    offset: int | None
    key: bytes | None
    value: bytes | None
    headers: Any = None
    # The decoded value, set only when the processor verified it as a signed hand-off.
    payload: dict[str, Any] | None = None

    @classmethod
    def of(cls, event: EventT) -> Inbound:
        message = event.message
        return cls(topic=message.topic, partition=message.partition, offset=message.offset,
                   key=message.key, value=message.value, headers=message.headers)


@dataclass(frozen=True)
class Emit:
    """Send ``value`` to ``topic``; the current trace context travels in the headers."""

    topic: str
    key: bytes | None
    value: bytes


@dataclass(frozen=True)
class Done:
    """The message was handled; these sends complete it, in this order."""

    emits: tuple[Emit, ...] = ()


@dataclass(frozen=True)
class DeadLetter:
    """The message cannot be processed: dead-letter it, then send ``notify`` (typically the
    requester's error reply)."""

    error: InvalidEvent
    notify: tuple[Emit, ...] = ()


@dataclass(frozen=True)
class Skip:
    """Nothing to do (a stale version, a status for another consumer); logged at debug."""

    reason: str


Outcome = Done | DeadLetter | Skip


def done(*emits: Emit) -> Done:
    return Done(tuple(emits))


class InfrastructureUnavailable(Exception):  # noqa: N818 - reads as a condition, like the others
    """Raised by a ``process`` function when a dependency it needs is down; retried, then the
    worker exits so the message is re-read."""


def is_infrastructure(exc: BaseException) -> bool:
    """Errors that say the database or the broker is unreachable, not that the message is bad.

    Imports are local: sqlalchemy is not loaded by every process that uses this module."""
    if isinstance(exc, InfrastructureUnavailable | ConnectionError | TimeoutError):
        return True
    from sqlalchemy.exc import DBAPIError, OperationalError

    if isinstance(exc, OperationalError):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError

    return isinstance(exc, KafkaConnectionError | KafkaTimeoutError)


@dataclass(frozen=True)
class RetryPolicy:
    """How long a worker keeps trying before it gives up on a message (see module doc)."""

    infrastructure_attempts: int = 6  # ~0.5+1+2+4+8 s of backoff, then exit and re-read
    infrastructure_max_wait_s: float = 10.0
    unexpected_attempts: int = 3  # then dead-letter as processing_error
    unexpected_wait_s: float = 0.2


@dataclass(frozen=True)
class StreamProcessor:
    """What a service declares; :func:`attach` makes it an agent with the shared policy."""

    service: str
    source: str
    dead_letters: str
    process: Callable[[Inbound], Awaitable[Outcome]]
    # What the sender learns when its message is dead-lettered (an error reply, a failed event);
    # a coroutine function when deciding needs I/O (does the reply topic exist?).
    on_dead_letter: Callable[[Inbound, InvalidEvent],
                             Sequence[Emit] | Awaitable[Sequence[Emit]]] = lambda _m, _e: ()
    span_name: str = ""
    concurrency: int = 1
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    # Messages on ``source`` are believed only with this stage's valid signature (see module doc).
    signed_by: handoff.Verifier | None = None
    max_bytes: int | None = None  # decoding cap for signed messages; default: the topic's


async def admit(processor: StreamProcessor, message: Inbound) -> Inbound | DeadLetter:
    """``message`` with its verified payload, or the dead letter saying why it is not believed.
    A processor without ``signed_by`` admits everything as it is."""
    verifier = processor.signed_by
    if verifier is None:
        return message
    topic = spec(processor.source)
    try:
        if message.value is None:
            raise InvalidEvent("schema_violation", f"{processor.source} carries no tombstones")
        payload = decode_json(message.value, processor.max_bytes or topic.max_bytes,
                              topic.schema or "")
        verifier.check(payload, handoff.message_id(payload))
    except InvalidEvent as error:
        return DeadLetter(error, await _notices(processor, message, error))
    return replace(message, payload=payload)


async def decide(processor: StreamProcessor, message: Inbound) -> Outcome:
    """Run ``process`` under the error policy and return the outcome to deliver. Raises only
    when infrastructure stays down (the caller lets the worker exit)."""
    policy = processor.retry
    for attempt in range(1, policy.unexpected_attempts + 1):
        try:
            return await _with_infrastructure_retry(processor, message)
        except InvalidEvent as error:
            return DeadLetter(error, await _notices(processor, message, error))
        except Exception as exc:  # noqa: BLE001 - the policy for bugs is retry, then DLQ
            if is_infrastructure(exc):
                raise
            trace.get_current_span().record_exception(exc)
            log(logger, logging.ERROR, "processing failed", service=processor.service,
                topic=message.topic, offset=message.offset, attempt=attempt,
                error=repr(exc)[:300])
            if attempt == policy.unexpected_attempts:
                error = InvalidEvent("processing_error", f"{type(exc).__name__}: {exc}"[:2000])
                return DeadLetter(error, await _notices(processor, message, error))
            await asyncio.sleep(policy.unexpected_wait_s * attempt)
    raise AssertionError("unreachable")


async def _notices(processor: StreamProcessor, message: Inbound,
                   error: InvalidEvent) -> tuple[Emit, ...]:
    notices = processor.on_dead_letter(message, error)
    if inspect.isawaitable(notices):
        notices = await notices
    return tuple(notices)


async def _with_infrastructure_retry(processor: StreamProcessor, message: Inbound) -> Outcome:
    policy = processor.retry
    async for attempt in AsyncRetrying(
        retry=retry_if_exception(is_infrastructure),
        stop=stop_after_attempt(policy.infrastructure_attempts),
        wait=wait_exponential(multiplier=0.5, max=policy.infrastructure_max_wait_s),
        before_sleep=lambda state: log(
            logger, logging.WARNING, "infrastructure unavailable, retrying",
            service=processor.service, attempt=state.attempt_number,
            error=repr(state.outcome.exception())[:200] if state.outcome else ""),
        reraise=True,
    ):
        with attempt:
            return await processor.process(message)
    raise AssertionError("unreachable")


class Deliverer:
    """Sends outcomes through the worker's Faust app, each awaited for the broker's ack."""

    def __init__(self, app: faust.App, service: str, dead_letters: str) -> None:
        self.app, self.service, self.dead_letters = app, service, dead_letters
        self._topics: dict[str, faust.TopicT] = {}

    def topic(self, name: str) -> faust.TopicT:
        if name not in self._topics:
            self._topics[name] = self.app.topic(name)
        return self._topics[name]

    async def send(self, emit: Emit) -> None:
        await (await self.topic(emit.topic).send(key=emit.key, value=emit.value,
                                                 headers=telemetry.inject_headers()))

    async def deliver(self, message: Inbound, outcome: Outcome) -> None:
        if isinstance(outcome, Skip):
            log(logger, logging.DEBUG, "message skipped", service=self.service,
                topic=message.topic, offset=message.offset, reason=outcome.reason)
            return
        if isinstance(outcome, DeadLetter):
            await self.dead_letter(message, outcome.error)
            emits: Sequence[Emit] = outcome.notify
        else:
            emits = outcome.emits
        await self.send_in_order(emits)

    async def send_in_order(self, emits: Sequence[Emit]) -> None:
        """Each emit acknowledged before any emit to *another* topic is sent; a run of emits to
        one topic (a stage's audit events) goes out together and is acknowledged together,
        one round trip instead of one per event. Within a topic the producer keeps their order
        (one in-flight batch per partition)."""
        pending: list[Any] = []
        for i, emit in enumerate(emits):
            if pending and emit.topic != emits[i - 1].topic:
                await asyncio.gather(*pending)
                pending = []
            pending.append(await self.topic(emit.topic).send(
                key=emit.key, value=emit.value, headers=telemetry.inject_headers()))
        if pending:
            await asyncio.gather(*pending)

    async def dead_letter(self, message: Inbound, error: InvalidEvent) -> None:
        """Acked by the broker before the source offset may be committed: a crash in between
        re-delivers the message instead of losing it."""
        record = dlq_record(topic=message.topic, partition=message.partition,
                            offset=message.offset, key=message.key, value=message.value,
                            error=error, service=self.service)
        await self.send(Emit(self.dead_letters, message.key, record.to_json()))
        trace.get_current_span().set_attribute("dlq.reason", error.error_type)
        metrics.instruments()["dlq"].add(  # type: ignore[attr-defined]
            1, {"service": self.service, "error_type": error.error_type})
        log(logger, logging.WARNING, "message sent to DLQ", service=self.service,
            topic=message.topic, offset=message.offset, error_type=error.error_type,
            reason=error.reason[:200])


async def handle(processor: StreamProcessor, deliverer: Deliverer, message: Inbound) -> None:
    """One message, start to finish, inside its consumer span."""
    with tracer.start_as_current_span(
        processor.span_name or f"{processor.service}.process", kind=SpanKind.CONSUMER,
        context=telemetry.extract_context(message.headers),
        attributes={"messaging.source": message.topic,
                    "messaging.kafka.partition": message.partition or 0,
                    "messaging.kafka.offset": message.offset or 0},
    ):
        admitted = await admit(processor, message)
        outcome = (admitted if isinstance(admitted, DeadLetter)
                   else await decide(processor, admitted))
        await deliverer.deliver(message, outcome)


def attach(app: faust.App, processor: StreamProcessor) -> Deliverer:
    """Declare the agent that runs ``processor`` on ``app``; returns its deliverer, which a
    service may reuse for sends outside a message (none do today)."""
    deliverer = Deliverer(app, processor.service, processor.dead_letters)

    async def agent(stream: faust.StreamT) -> None:
        async for event in stream.events():
            await handle(processor, deliverer, Inbound.of(event))

    agent.__name__ = agent.__qualname__ = f"{processor.service}_{processor.source}".replace(
        ".", "_").replace("-", "_")
    app.agent(app.topic(processor.source), name=agent.__name__,
              concurrency=processor.concurrency)(agent)
    return deliverer


@dataclass(frozen=True)
class BatchProcessor:
    """A processor that handles messages in batches (one model call for many documents).

    ``process_batch`` returns one outcome per message, in order; per-message data errors are
    its own :class:`DeadLetter` outcomes. When the whole batch fails unexpectedly and keeps
    failing, each message is retried alone, so one poison message is dead-lettered by itself
    and the rest of its batch still goes through."""

    service: str
    source: str
    dead_letters: str
    process_batch: Callable[[Sequence[Inbound]], Awaitable[Sequence[Outcome]]]
    batch_size: int
    batch_window_s: float
    on_dead_letter: Callable[[Inbound, InvalidEvent],
                             Sequence[Emit] | Awaitable[Sequence[Emit]]] = lambda _m, _e: ()
    retry: RetryPolicy = field(default_factory=RetryPolicy)


def _single(batch: BatchProcessor) -> StreamProcessor:
    async def process_one(message: Inbound) -> Outcome:
        (outcome,) = await batch.process_batch([message])
        return outcome

    return StreamProcessor(service=batch.service, source=batch.source,
                           dead_letters=batch.dead_letters, process=process_one,
                           on_dead_letter=batch.on_dead_letter, retry=batch.retry)


async def decide_batch(batch: BatchProcessor,
                       messages: Sequence[Inbound]) -> list[Outcome]:
    """One outcome per message under the shared policy (see :class:`BatchProcessor`)."""
    single = _single(batch)
    if len(messages) == 1:
        return [await decide(single, messages[0])]
    for attempt in range(1, batch.retry.unexpected_attempts + 1):
        try:
            async for retrying in AsyncRetrying(
                retry=retry_if_exception(is_infrastructure),
                stop=stop_after_attempt(batch.retry.infrastructure_attempts),
                wait=wait_exponential(multiplier=0.5, max=batch.retry.infrastructure_max_wait_s),
                reraise=True,
            ):
                with retrying:
                    outcomes = list(await batch.process_batch(messages))
            if len(outcomes) != len(messages):
                raise AssertionError("process_batch must return one outcome per message")
            return outcomes
        except Exception as exc:  # noqa: BLE001 - retried, then message by message
            if is_infrastructure(exc):
                raise
            log(logger, logging.ERROR, "batch failed", service=batch.service,
                size=len(messages), attempt=attempt, error=repr(exc)[:300])
            await asyncio.sleep(batch.retry.unexpected_wait_s * attempt)
    return [await decide(single, message) for message in messages]


def attach_batch(app: faust.App, batch: BatchProcessor) -> Deliverer:
    """Declare the batching agent for ``batch`` on ``app`` (see :func:`attach`)."""
    deliverer = Deliverer(app, batch.service, batch.dead_letters)

    async def agent(stream: faust.StreamT) -> None:
        async for events in stream.take_events(batch.batch_size, within=batch.batch_window_s):
            messages = [Inbound.of(event) for event in events]
            outcomes = await decide_batch(batch, messages)
            for message, outcome in zip(messages, outcomes, strict=True):
                await deliverer.deliver(message, outcome)

    agent.__name__ = agent.__qualname__ = f"{batch.service}_{batch.source}".replace(
        ".", "_").replace("-", "_")
    app.agent(app.topic(batch.source), name=agent.__name__)(agent)
    return deliverer
