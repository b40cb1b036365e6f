"""Kafka offset look-ups shared by ``doctor`` and ``replay``, and the replay progress record.

Everything goes through a ``Consumer`` handle, never ``AdminClient.list_consumer_group_offsets``:
librdkafka (still in 2.16) can crash the whole process with a segmentation fault when an admin
OffsetFetch is answered "coordinator loading / not coordinator", which happens on a freshly
started cluster (confluentinc/librdkafka#5040, confluentinc/confluent-kafka-python#1982). A
consumer's ``committed()`` owns a group handle and simply retries. Creating a consumer with a
worker's ``group.id`` only reads that group's offsets: without ``subscribe`` it never joins the
group, so the workers are not rebalanced.

librdkafka's own log lines (connection refused, ...) go to a silent logger: the callers turn
failures into one clear message instead.
"""

from __future__ import annotations

import logging
import math
import re
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from services.common import kafka_auth

QUIET = logging.getLogger("customllm.ops.librdkafka")
QUIET.addHandler(logging.NullHandler())
QUIET.propagate = False

OFFSET_INVALID = -1001  # librdkafka: no committed offset


def client_config(bootstrap: str, timeout_s: float) -> dict[str, object]:
    """Short network timeouts, so an unreachable broker is reported instead of waited for."""
    timeout_ms = max(1000, int(timeout_s * 1000))
    return {
        **kafka_auth.client_config(bootstrap),
        "socket.timeout.ms": timeout_ms,
        "socket.connection.setup.timeout.ms": timeout_ms,
        "logger": QUIET,
    }


def open_consumer(bootstrap: str, group: str, timeout_s: float, **extra: object) -> Consumer:
    config = client_config(bootstrap, timeout_s)
    config.update({"group.id": group, "client.id": "customllm-ops", "enable.auto.commit": False,
                   "auto.offset.reset": "earliest", "enable.partition.eof": False})
    config.update(extra)
    return Consumer(config)


def bootstrap_hosts(bootstrap: str) -> list[tuple[str, int]]:
    """``host:port,host:port`` (IPv6 as ``[::1]:9092``) → pairs; a missing port means 9092."""
    hosts = []
    for item in bootstrap.split(","):
        item = item.strip()
        if not item:
            continue
        item = re.sub(r"^[a-zA-Z]+://", "", item)
        host, sep, port = item.rpartition(":")
        if not sep or not port.isdigit():
            host, port = item, "9092"
        hosts.append((host.strip("[]"), int(port)))
    return hosts


def tcp_probe(bootstrap: str, timeout_s: float) -> tuple[bool, str]:
    """Whether any bootstrap server accepts a TCP connection; else why not, per server."""
    failures = []
    for host, port in bootstrap_hosts(bootstrap):
        try:
            socket.create_connection((host, port), timeout=timeout_s).close()
            return True, f"{host}:{port}"
        except OSError as exc:
            failures.append(f"{host}:{port} ({exc.strerror or exc})")
    return False, "; ".join(failures) or "no bootstrap servers configured"


def partitions_of(consumer: Consumer, topic: str, timeout_s: float) -> list[int] | None:
    """The topic's partitions, or None when the topic does not exist."""
    metadata = consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
    if metadata is None or metadata.error is not None:
        return None
    return sorted(metadata.partitions)


# Answers a broker gives while leadership or the group coordinator is still moving into place
# (right after topics are created or a broker restarts): asked again, they go away.
TRANSIENT = frozenset({
    KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError.COORDINATOR_NOT_AVAILABLE, KafkaError.NOT_COORDINATOR,
    KafkaError.REQUEST_TIMED_OUT,
})
T = TypeVar("T")


def retrying(call: Callable[[], T], timeout_s: float) -> T:
    """``call()``, asked again on transient broker errors until ``timeout_s`` has passed."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return call()
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            code = error.code() if isinstance(error, KafkaError) else None
            if code not in TRANSIENT or time.monotonic() >= deadline:
                raise
        time.sleep(0.2)


def watermarks(consumer: Consumer, topic: str, partitions: Iterable[int],
               timeout_s: float) -> dict[int, tuple[int, int]]:
    """Partition → (low, high): the first offset still stored and the next offset written."""
    return {p: retrying(lambda p=p: consumer.get_watermark_offsets(
                TopicPartition(topic, p), timeout=timeout_s, cached=False), timeout_s)
            for p in partitions}


def committed(consumer: Consumer, topic: str, partitions: Iterable[int],
              timeout_s: float) -> dict[int, tuple[int | None, str | None]]:
    """Partition → (committed offset or None, commit metadata) for the consumer's group."""
    found = retrying(lambda: _checked(consumer.committed(
        [TopicPartition(topic, p) for p in partitions], timeout=timeout_s)), timeout_s)
    return {tp.partition: (tp.offset if tp.offset >= 0 else None, tp.metadata) for tp in found}


def _checked(found: list[TopicPartition]) -> list[TopicPartition]:
    """Raise the first per-partition error (so ``retrying`` sees it)."""
    for tp in found:
        if tp.error is not None:
            raise KafkaException(tp.error)
    return found


def to_millis(when: datetime) -> int:
    """A Kafka timestamp: milliseconds since the epoch (a naive time counts as UTC)."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return math.floor(when.timestamp() * 1000)


def offsets_for_time(consumer: Consumer, topic: str, partitions: Iterable[int],
                     when: datetime, timeout_s: float) -> dict[int, int | None]:
    """Partition → the first offset whose timestamp is at or after ``when`` (None: no such
    record yet)."""
    millis = to_millis(when)
    found = retrying(lambda: _checked(consumer.offsets_for_times(
        [TopicPartition(topic, p, millis) for p in partitions], timeout=timeout_s)), timeout_s)
    return {tp.partition: tp.offset if tp.offset >= 0 else None for tp in found}


# --------------------------------------------------------------------------------------------
# Replay progress: which DLQ records a replay group has already handled, per partition.
# --------------------------------------------------------------------------------------------

MARK_PREFIX = "customllm-replay/1 "
# Brokers refuse commit metadata above offset.metadata.max.bytes (4096 by default).
MARK_MAX_CHARS = 3500


@dataclass(frozen=True)
class ReplayMark:
    """One DLQ partition's replay progress, stored as that partition's committed offset (and
    its commit metadata) in the group ``customllm-replay-<dlq topic>``.

    Every record below ``next_offset`` has been handled; ``done`` lists handled records at or
    above it. Those exist when a filter (``--error-type``, ``--since``) passed over older records:
    they stay replayable later, while the handled ones are never replayed twice.
    """

    next_offset: int = 0
    done: frozenset[int] = field(default_factory=frozenset)

    def handled(self, offset: int) -> bool:
        return offset < self.next_offset or offset in self.done

    def pending(self, low: int, high: int) -> int:
        """Records in [low, high) not handled yet."""
        start = max(low, self.next_offset)
        if start >= high:
            return 0
        return high - start - sum(1 for o in self.done if start <= o < high)


def _ranges(offsets: Iterable[int]) -> list[tuple[int, int]]:
    ranges: list[tuple[int, int]] = []
    for offset in sorted(set(offsets)):
        if ranges and offset == ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], offset)
        else:
            ranges.append((offset, offset))
    return ranges


def encode_mark(mark: ReplayMark) -> tuple[int, str]:
    """(offset to commit, commit metadata)."""
    text = ",".join(f"{a}" if a == b else f"{a}-{b}" for a, b in _ranges(mark.done))
    return mark.next_offset, MARK_PREFIX + text


def decode_mark(offset: int | None, metadata: str | None) -> ReplayMark:
    """From a committed offset and its metadata; anything unreadable counts as no extra."""
    done: set[int] = set()
    if metadata and metadata.startswith(MARK_PREFIX):
        for part in metadata[len(MARK_PREFIX):].split(","):
            first, _, last = part.partition("-")
            if first.isdigit() and (not last or last.isdigit()):
                done.update(range(int(first), int(last or first) + 1))
    start = offset if offset is not None and offset >= 0 else 0
    return ReplayMark(start, frozenset(o for o in done if o >= start))


def advance_mark(mark: ReplayMark, handled: Iterable[int],
                 max_chars: int = MARK_MAX_CHARS) -> tuple[ReplayMark, int]:
    """Add newly handled offsets and move ``next_offset`` over every contiguous handled record.

    When the remaining list would not fit in the commit metadata (many interleaved filtered
    records), the oldest gaps are given up: ``next_offset`` jumps over them. Returns the new mark
    and how many unhandled records were passed over that way (normally 0).
    """
    done = set(mark.done) | {o for o in handled if o >= mark.next_offset}
    next_offset = mark.next_offset
    passed_over = 0
    while True:
        while next_offset in done:
            done.discard(next_offset)
            next_offset += 1
        candidate = ReplayMark(next_offset, frozenset(done))
        if len(encode_mark(candidate)[1]) <= max_chars or not done:
            return candidate, passed_over
        jump = min(done)
        passed_over += jump - next_offset
        next_offset = jump
