"""Request/reply over Kafka: send a RagRequest, await the RagReply with the same request_id.

One client serves many concurrent requests: a background thread reads the reply topic and
resolves the waiting request by id. Replies are read from the position the topic had when the
client started, so none is missed; a duplicate reply (at-least-once delivery) is dropped.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections import OrderedDict
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from services.common import identity, kafka_admin, kafka_auth, telemetry
from services.common.config import get_settings
from services.common.events import RagReply, RagRequest
from services.common.exceptions import CustomLLMError
from services.common.kafka_acl import reply_topic_for
from services.common.messages import decode_json, parse_model
from services.common.producer import make_producer, send
from services.common.topics import DAY_MS, RAG_REPLIES, RAG_REQUESTS, TopicSpec, spec

MAX_REPLY_BYTES = 16_000_000
_SETTLING = {KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
             KafkaError.UNKNOWN_TOPIC_OR_PART}


class ReplyTimeout(CustomLLMError):
    """No reply arrived in time; the request may still be answered later (and then dropped)."""


class ReplyClient:
    """``credential`` (an API key or bearer token) goes with every request that carries none
    of its own: the input guardrail derives the principal from it. Replies come back on this
    client's private topic (``rag.replies.<kafka identity>``), created here on first use; the
    broker lets no other client read it."""

    def __init__(self, bootstrap: str, reply_topic: str | None = None,
                 request_topic: str = RAG_REQUESTS, client_id: str = "customllm-client",
                 credential: str | None = None,
                 creds: kafka_auth.KafkaCredentials | None = None) -> None:
        settings = get_settings()
        found = creds or kafka_auth.credentials(settings)
        who = found.username if found is not None else "anonymous"
        self.reply_topic = reply_topic or reply_topic_for(who)
        self.request_topic = request_topic
        self.credential = credential if credential is not None else \
            identity.own_credential(settings)
        config = kafka_auth.client_config(bootstrap, creds=creds)
        ensure_reply_topic(bootstrap, self.reply_topic, settings.topic_partitions, creds)
        self._producer = make_producer(bootstrap, client_id, **{"linger.ms": 1},
                                       **_sasl_only(config))
        self._consumer = Consumer({
            **config, "group.id": f"customllm-{who}-{client_id}-{uuid.uuid4().hex}",
            "enable.auto.commit": False, "auto.offset.reset": "latest",
            # The broker answers a waiting fetch as soon as a reply lands, so a short wait buys
            # no latency; 10 ms made an idle client send the broker 100 fetches a second (no
            # faster on a round trip: p50 7.5 ms at 500 against 8.8 at 10).
            "fetch.wait.max.ms": 500, "fetch.max.bytes": MAX_REPLY_BYTES,
        })
        self._pending: dict[str, Future[RagReply]] = {}
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._assign_from_end()
        self._thread = threading.Thread(target=self._read_replies, daemon=True,
                                        name="reply-reader")
        self._thread.start()

    def _assign_from_end(self, timeout_s: float = 60.0) -> None:
        """Retried: just after the topic is created its partitions may have no leader yet."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                return self._try_assign_from_end()
            except KafkaException as exc:
                if not exc.args[0].retriable() and exc.args[0].code() not in _SETTLING:
                    raise
                if time.monotonic() > deadline:
                    raise CustomLLMError(f"reply topic {self.reply_topic} not ready: {exc}") \
                        from exc
                time.sleep(0.5)

    def _try_assign_from_end(self) -> None:
        metadata = self._consumer.list_topics(self.reply_topic, timeout=10)
        topic = metadata.topics[self.reply_topic]
        if topic.error is not None:
            raise CustomLLMError(f"reply topic {self.reply_topic}: {topic.error}")
        partitions = []
        for partition in topic.partitions:
            _low, high = self._consumer.get_watermark_offsets(
                TopicPartition(self.reply_topic, partition), timeout=10)
            partitions.append(TopicPartition(self.reply_topic, partition, high))
        self._consumer.assign(partitions)

    def _read_replies(self) -> None:
        while not self._stop.is_set():
            message = self._consumer.poll(0.1)
            if message is None or message.error() or message.value() is None:
                continue
            try:
                reply = parse_model(RagReply, decode_json(message.value(), MAX_REPLY_BYTES,
                                                          spec(RAG_REPLIES).schema))
            except CustomLLMError:
                continue  # not ours to dead-letter: the producer validated it already
            with self._lock:
                if reply.request_id in self._seen:
                    continue
                future = self._pending.pop(reply.request_id, None)
                if future is None:
                    continue  # another client's request, or one that timed out
                self._seen[reply.request_id] = None
                while len(self._seen) > 100_000:
                    self._seen.popitem(last=False)
            future.set_result(reply)

    def submit(self, request: RagRequest) -> Future[RagReply]:
        """Send now; the future resolves with the reply (always on this client's topic).
        The request is validated before a reply is awaited, so an invalid one raises without
        leaving a pending entry behind."""
        update: dict[str, object] = {"reply_to": self.reply_topic}
        if request.credential is None and self.credential is not None:
            update["credential"] = self.credential
        request = request.model_copy(update=update)
        value = request.to_json()
        future: Future[RagReply] = Future()
        with self._lock:
            self._pending[request.request_id] = future
        errors: list[str] = []
        try:
            send(self._producer, self.request_topic, request.request_id, value,
                 telemetry.inject_headers(), errors)
            self._producer.flush(10)
            if errors:
                raise CustomLLMError(f"request not delivered: {errors[0]}")
        except BaseException:
            self._forget(request.request_id)
            raise
        return future

    def request(self, request: RagRequest, timeout_s: float) -> RagReply:
        future = self.submit(request)
        try:
            return future.result(timeout=timeout_s)
        except FutureTimeout as exc:
            raise ReplyTimeout(f"no reply to {request.request_id} in {timeout_s:.0f}s") from exc
        finally:
            self._forget(request.request_id)

    async def arequest(self, request: RagRequest, timeout_s: float) -> RagReply:
        """Cancellation (a client that hung up) frees the pending entry like a timeout."""
        future = await asyncio.to_thread(self.submit, request)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), timeout_s)
        except TimeoutError as exc:
            raise ReplyTimeout(f"no reply to {request.request_id} in {timeout_s:.0f}s") from exc
        finally:
            self._forget(request.request_id)

    def expect(self, request_id: str) -> Future[RagReply]:
        """Await the reply to a request this client did not send itself (a request another
        tool wrote to the bus with this client's reply topic)."""
        future: Future[RagReply] = Future()
        with self._lock:
            self._pending[request_id] = future
        return future

    def pending_count(self) -> int:
        with self._lock:
            return len(self._pending)

    def _forget(self, request_id: str) -> None:
        with self._lock:
            self._pending.pop(request_id, None)

    def close(self, timeout_s: float = 5.0) -> None:
        """Stops within about three times ``timeout_s`` even when the broker is gone: a
        consumer's close waits on the broker and then may never return, and a process told to
        stop (a gateway on SIGTERM, a test run's workers when the run dies) must stop, not
        hold its port. The close is given ``timeout_s`` on a thread of its own, and skipped
        while the reader still polls (the consumer is not safe to close under it)."""
        self._stop.set()
        self._thread.join(timeout=timeout_s)
        if not self._thread.is_alive():
            closer = threading.Thread(target=self._consumer.close, daemon=True,
                                      name="reply-consumer-close")
            closer.start()
            closer.join(timeout=timeout_s)
        self._producer.flush(timeout_s)
        # Drop the producer now: left to garbage collection it keeps reconnecting (and logging)
        # after the broker is gone.
        del self._producer


def ensure_reply_topic(bootstrap: str, topic: str, partitions: int,
                       creds: kafka_auth.KafkaCredentials | None = None) -> None:
    """A client's reply topic is created on demand (the ACLs allow each identity to create
    its own ``rag.replies.<identity>*`` and nothing else)."""
    reply = TopicSpec(topic, spec(RAG_REPLIES).schema, "private replies of one client",
                      {"retention.ms": str(DAY_MS)})
    try:
        kafka_admin.ensure_topics(bootstrap, partitions, 1, [reply], creds=creds)
    except KafkaException as exc:
        raise CustomLLMError(f"cannot create reply topic {topic}: {exc}") from exc


def _sasl_only(config: dict[str, object]) -> dict[str, object]:
    """The identity part of a client config, for make_producer's overrides."""
    return {k: v for k, v in config.items() if k.startswith(("sasl.", "security.", "ssl."))}


def new_request_id() -> str:
    return f"{int(time.time() * 1000):x}-{uuid.uuid4().hex[:12]}"
