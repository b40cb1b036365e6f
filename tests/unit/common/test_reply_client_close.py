"""A reply client stops even when the broker is gone: its consumer's close may then never
return, and the process that is stopping (a gateway on SIGTERM, a killed test run's workers)
must not hang holding its port."""

from __future__ import annotations

import threading
import time

import pytest

from services.common.rpc import ReplyClient

pytestmark = pytest.mark.unit


class _StuckConsumer:
    def __init__(self) -> None:
        self.release = threading.Event()
        self.close_called = threading.Event()

    def close(self) -> None:
        self.close_called.set()
        self.release.wait()  # as librdkafka's close waiting on a broker that is gone


class _Producer:
    flushed: float | None = None

    def flush(self, timeout: float) -> int:
        self.flushed = timeout
        return 0


def _client(reader: threading.Thread) -> tuple[ReplyClient, _StuckConsumer, _Producer]:
    client = ReplyClient.__new__(ReplyClient)  # no broker: the parts close() touches
    consumer, producer = _StuckConsumer(), _Producer()
    client._stop, client._thread = threading.Event(), reader
    client._consumer, client._producer = consumer, producer
    return client, consumer, producer


def test_close_returns_when_the_consumers_close_hangs():
    reader = threading.Thread(target=lambda: None)
    reader.start()
    client, consumer, producer = _client(reader)
    started = time.monotonic()
    client.close(timeout_s=0.2)
    assert time.monotonic() - started < 5  # bounded, though the consumer never finished
    assert consumer.close_called.is_set() and producer.flushed == 0.2
    consumer.release.set()


def test_the_consumer_is_not_closed_under_a_reader_still_polling_it():
    stop = threading.Event()
    reader = threading.Thread(target=stop.wait, daemon=True)  # ignores the client's stop flag
    reader.start()
    client, consumer, _ = _client(reader)
    client.close(timeout_s=0.2)
    assert not consumer.close_called.is_set()
    stop.set()
