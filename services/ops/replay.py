"""``customllm replay``: re-drive dead-lettered messages, or a time range of a topic, after a fix.

Two modes:

* **DLQ replay** (``--from docs.changes.dlq``): every DLQ record is checked against
  ``dlq-record.v1``, its original payload (UTF-8 text, or base64 when it was not text) and key
  are restored, and the message is produced again to the record's ``original_topic``. Only the
  platform's source topics (``docs.changes``, ``chunks.embed``, ``rag.requests``) are accepted as
  targets, so a crafted DLQ record cannot route data into an internal topic. With
  ``--rekey-from-doc-id`` the key is taken from the payload's id field (``doc_id``; for
  ``rag.requests`` the ``request_id``); that is the fix for ``key_mismatch`` records, which are
  skipped without it.
* **Range replay** (``--topic docs.changes --since T [--until T]``): the messages of a source
  topic written in a time range are produced again to the same topic and partition, with the
  same key, value and headers. Downstream processing is idempotent (a version not newer than the
  stored one is ignored), so this re-drives processing without changing what is stored.

Every replayed message carries the header ``x-customllm-replay: <topic>:<partition>:<offset>``
naming the record it came from.

**Replaying twice.** Kafka is append-only: a replay never deletes a DLQ record. Instead, a DLQ
replay records its progress in the consumer group ``customllm-replay-<dlq topic>``: after the
replayed messages are acknowledged by the broker, it commits, per partition, the offset below
which every record has been handled (replayed, or refused for good: invalid record, truncated
payload, target not a source topic) and, in the commit's metadata, the handled records above it.
The next replay starts from there, so each record is replayed at most once, and records that a
filter (``--error-type``, ``--since``/``--until``, ``--limit``) passed over stay replayable.
``customllm doctor`` counts the records no replay has handled yet. To replay records once more,
reset that group (``kafka-consumer-groups.sh --reset-offsets --group customllm-replay-...``).
A range replay keeps no such record: running it twice re-produces the range twice. A dry run
(``--dry-run``) lists what would happen and neither produces nor records anything.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, get_args

from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition

from services.common import contracts
from services.common import kafka_offsets as offsets
from services.common.config import Settings
from services.common.events import DlqErrorType
from services.common.exceptions import ContractError, CustomLLMError
from services.common.producer import DeliveryError, flush, make_producer
from services.common.topics import CHUNKS_EMBED, DLQ_SCHEMA, DOCS_CHANGES, RAG_REQUESTS, TOPICS

REPLAYABLE_TOPICS: tuple[str, ...] = (DOCS_CHANGES, CHUNKS_EMBED, RAG_REQUESTS)
DLQ_TOPICS: tuple[str, ...] = tuple(spec.name for spec in TOPICS
                                    if spec.schema == DLQ_SCHEMA)
# The payload field a topic is keyed by: what --rekey-from-doc-id takes the key from.
KEY_FIELDS: dict[str, str] = {DOCS_CHANGES: "doc_id", CHUNKS_EMBED: "doc_id",
                              RAG_REQUESTS: "request_id"}
ERROR_TYPES: tuple[str, ...] = get_args(DlqErrorType)
REPLAY_HEADER = "x-customllm-replay"
RANGE_GROUP = "customllm-replay-range"  # range replays read with it but never commit
MAX_LISTED = 1000  # items kept for the report; counts are always complete

Action = Literal["replay", "skip"]


class ReplayError(CustomLLMError):
    """The replay was refused or could not finish; nothing was recorded as replayed."""


def replay_group(dlq_topic: str) -> str:
    return f"customllm-replay-{dlq_topic}"


def parse_time(value: str) -> datetime:
    """ISO 8601 (``2025-01-31``, ``2025-01-31T12:00``, ``...Z``, ``...+02:00``); no zone = UTC."""
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError as exc:
        raise ReplayError(f"not an ISO 8601 time: {value!r}") from exc
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Decision:
    """What to do with one record. ``handled`` records are never looked at again (DLQ mode)."""

    action: Action
    reason: str
    handled: bool = False
    topic: str | None = None
    key: bytes | None = None
    value: bytes | None = None
    partition: int | None = None
    error_type: str | None = None


@dataclass(frozen=True)
class ReplayItem:
    """One examined record, for the listing (``--dry-run``) and the summary."""

    partition: int
    offset: int
    action: Action
    reason: str
    target: str | None = None
    key: str | None = None
    error_type: str | None = None
    timestamp: datetime | None = None


@dataclass
class ReplaySummary:
    source: str
    dry_run: bool
    group: str | None = None
    replayed: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    targets: Counter[str] = field(default_factory=Counter)
    items: list[ReplayItem] = field(default_factory=list)
    more_items: int = 0
    stopped: str | None = None
    passed_over: int = 0
    committed: dict[int, int] = field(default_factory=dict)

    def add(self, item: ReplayItem) -> None:
        if item.action == "replay":
            self.replayed += 1
            self.targets[item.target or "?"] += 1
        else:
            self.skipped[item.reason] += 1
        if len(self.items) < MAX_LISTED:
            self.items.append(item)
        else:
            self.more_items += 1


# --------------------------------------------------------------------------------------------
# Pure decisions
# --------------------------------------------------------------------------------------------


def decide_dlq_record(
    value: bytes | None, *, error_types: Iterable[str] = (), rekey: bool = False,
    target_partitions: dict[str, int] | None = None,
) -> Decision:
    """Turn one raw DLQ message into the message to produce, or the reason not to.

    ``target_partitions`` (topic → partition count) lets the original partition be kept when
    the key is unchanged, so the replayed event lands beside the key's other events.
    """
    try:
        record = json.loads(value) if value is not None else None
        contracts.validate(DLQ_SCHEMA, record)
    except (ValueError, ContractError):
        return Decision("skip", "not a valid dlq-record.v1 record", handled=True)
    error_type = record["error_type"]
    # What can never be replayed is settled first, so no later replay looks at it again.
    target = record["original_topic"]
    if target not in REPLAYABLE_TOPICS:
        return Decision("skip", f"original topic {target} is not a replayable source topic",
                        handled=True, error_type=error_type)
    if record.get("payload_truncated"):
        return Decision("skip", "payload was truncated when dead-lettered", handled=True,
                        error_type=error_type)
    encoding = record["payload_encoding"]
    payload = record.get("payload")
    try:
        if encoding == "none" or payload is None:
            restored = None
        elif encoding == "base64":
            restored = base64.b64decode(payload, validate=True)
        else:
            restored = payload.encode("utf-8")
    except (binascii.Error, ValueError):
        return Decision("skip", "base64 payload does not decode", handled=True,
                        error_type=error_type)
    wanted = set(error_types)
    if wanted and error_type not in wanted:
        return Decision("skip", f"error type {error_type} not selected", error_type=error_type)
    key = record["key"].encode("utf-8") if record.get("key") is not None else None
    partition = record.get("partition")
    reason = ""
    if rekey:
        new_key = _key_from_payload(restored, KEY_FIELDS[target])
        if new_key is None:
            if error_type == "key_mismatch":
                return Decision("skip", f"payload has no {KEY_FIELDS[target]} to rekey from",
                                handled=True, error_type=error_type)
        elif new_key != key:
            key, partition = new_key, None
            reason = f"rekeyed from {KEY_FIELDS[target]}"
    elif error_type == "key_mismatch":
        return Decision("skip", "key_mismatch: replay with --rekey-from-doc-id",
                        error_type=error_type)
    if partition is not None and (target_partitions is None
                                  or not 0 <= partition < target_partitions.get(target, 0)):
        partition = None
    return Decision("replay", reason, handled=True, topic=target, key=key, value=restored,
                    partition=partition, error_type=error_type)


def _key_from_payload(value: bytes | None, field_name: str) -> bytes | None:
    if value is None:
        return None
    try:
        payload = json.loads(value)
    except ValueError:
        return None
    found = payload.get(field_name) if isinstance(payload, dict) else None
    return found.encode("utf-8") if isinstance(found, str) and found else None


def replay_headers(source: str, partition: int, offset: int,
                   original: Iterable[tuple[str, bytes | None]] = ()) -> list[tuple[str, bytes]]:
    """The original headers (minus an older replay mark) plus this replay's mark."""
    kept = [(k, v if v is not None else b"") for k, v in original if k != REPLAY_HEADER]
    return [*kept, (REPLAY_HEADER, f"{source}:{partition}:{offset}".encode())]


# --------------------------------------------------------------------------------------------
# Kafka plumbing
# --------------------------------------------------------------------------------------------


@dataclass
class _Range:
    start: int
    end: int  # exclusive


def _connect(settings: Settings, group: str, timeout_s: float) -> Consumer:
    reachable, where = offsets.tcp_probe(settings.kafka_bootstrap, timeout_s)
    if not reachable:
        raise ReplayError(f"Kafka is not reachable at {settings.kafka_bootstrap}: {where}")
    return offsets.open_consumer(settings.kafka_bootstrap, group, timeout_s)


def _time_bounds(consumer: Consumer, topic: str, partitions: list[int], since: datetime | None,
                 until: datetime | None, high: dict[int, int],
                 timeout_s: float) -> tuple[dict[int, int], dict[int, int]]:
    """Per partition, the first offset at/after ``since`` and the first at/after ``until``."""
    starts = {p: 0 for p in partitions}
    ends = dict(high)
    if since is not None:
        found = offsets.offsets_for_time(consumer, topic, partitions, since, timeout_s)
        starts = {p: found[p] if found[p] is not None else high[p] for p in partitions}
    if until is not None:
        found = offsets.offsets_for_time(consumer, topic, partitions, until, timeout_s)
        ends = {p: min(high[p], found[p]) if found[p] is not None else high[p]
                for p in partitions}
    return starts, ends


def _read(consumer: Consumer, topic: str, ranges: dict[int, _Range],
          timeout_s: float) -> Iterable[Message]:
    """Every message of the ranges, in offset order per partition; the ends are a snapshot, so
    messages appended meanwhile (a replayed record dead-lettered again) are not chased."""
    todo = {p: r for p, r in ranges.items() if r.start < r.end}
    if not todo:
        return
    consumer.assign([TopicPartition(topic, p, r.start) for p, r in todo.items()])
    idle_limit = max(10.0, timeout_s * 3)
    idle = 0.0
    while todo:
        batch = consumer.consume(num_messages=500, timeout=1.0)
        if not batch:
            # Offsets can have gaps (transaction markers, compaction): the position, not the
            # last message seen, tells that a partition is done.
            for tp in consumer.position([TopicPartition(topic, p) for p in todo]):
                if tp.offset >= todo[tp.partition].end:
                    _finish(consumer, topic, todo, tp.partition)
            idle += 1.0
            if todo and idle >= idle_limit:
                left = ", ".join(f"partition {p} below {r.end}" for p, r in todo.items())
                raise ReplayError(f"no messages from {topic} for {idle_limit:.0f}s ({left})")
            continue
        idle = 0.0
        for message in batch:
            if message.error() is not None:
                raise ReplayError(f"reading {topic}: {message.error()}")
            p = message.partition()
            window = todo.get(p)
            if window is None:
                continue
            if message.offset() < window.end:
                yield message
            if message.offset() >= window.end - 1:
                _finish(consumer, topic, todo, p)


def _finish(consumer: Consumer, topic: str, todo: dict[int, _Range], partition: int) -> None:
    todo.pop(partition, None)
    consumer.pause([TopicPartition(topic, partition)])


def _produce(producer: Producer, errors: list[str], topic: str, key: bytes | None,
             value: bytes | None, headers: list[tuple[str, bytes]],
             partition: int | None) -> None:
    def on_delivery(err: object, _msg: object) -> None:
        if err is not None:
            errors.append(str(err))

    kwargs: dict[str, Any] = {"key": key, "value": value, "headers": headers,
                              "on_delivery": on_delivery}
    if partition is not None:
        kwargs["partition"] = partition
    while True:
        try:
            producer.produce(topic, **kwargs)
            break
        except BufferError:
            producer.poll(0.5)
    producer.poll(0)


def _timestamp(message: Message) -> datetime | None:
    kind, millis = message.timestamp()
    return datetime.fromtimestamp(millis / 1000, UTC) if kind and millis >= 0 else None


def _outside(message: Message, since: datetime | None, until: datetime | None) -> bool:
    """Whether the record's timestamp is outside [since, until), compared in milliseconds like
    Kafka's offsets_for_times (a record has no finer timestamp)."""
    kind, millis = message.timestamp()
    if not kind or millis < 0:
        return False
    return ((since is not None and millis < offsets.to_millis(since))
            or (until is not None and millis >= offsets.to_millis(until)))


def _key_text(key: bytes | None) -> str | None:
    return key.decode("utf-8", "replace") if key is not None else None


def _check_range(since: datetime | None, until: datetime | None) -> None:
    if since is not None and until is not None and until <= since:
        raise ReplayError("--until must be later than --since")


# --------------------------------------------------------------------------------------------
# DLQ replay
# --------------------------------------------------------------------------------------------


def replay_dlq(
    settings: Settings, dlq_topic: str, *, error_types: Iterable[str] = (),
    since: datetime | None = None, until: datetime | None = None, limit: int | None = None,
    dry_run: bool = False, rekey: bool = False, timeout_s: float = 10.0,
    on_total: Callable[[int], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> ReplaySummary:
    """Re-drive a DLQ's records that no earlier replay handled (see the module docstring)."""
    if dlq_topic not in DLQ_TOPICS:
        raise ReplayError(f"{dlq_topic!r} is not a DLQ topic; choose one of "
                          f"{', '.join(DLQ_TOPICS)}")
    error_types = list(error_types)
    unknown = sorted(set(error_types) - set(ERROR_TYPES))
    if unknown:
        raise ReplayError(f"unknown error type(s) {', '.join(unknown)}; known: "
                          f"{', '.join(ERROR_TYPES)}")
    _check_range(since, until)
    group = replay_group(dlq_topic)
    summary = ReplaySummary(dlq_topic, dry_run, group)
    consumer = _connect(settings, group, timeout_s)
    producer: Producer | None = None
    try:
        partitions = offsets.partitions_of(consumer, dlq_topic, timeout_s)
        if partitions is None:
            raise ReplayError(f"topic {dlq_topic} does not exist; run `customllm topics`")
        target_partitions = {t: len(offsets.partitions_of(consumer, t, timeout_s) or [])
                             for t in REPLAYABLE_TOPICS}
        marks_raw = offsets.committed(consumer, dlq_topic, partitions, timeout_s)
        marks = {p: offsets.decode_mark(*marks_raw[p]) for p in partitions}
        water = offsets.watermarks(consumer, dlq_topic, partitions, timeout_s)
        high = {p: water[p][1] for p in partitions}
        starts, ends = _time_bounds(consumer, dlq_topic, partitions, since, until, high, timeout_s)
        ranges = {p: _Range(max(water[p][0], marks[p].next_offset, starts[p]), ends[p])
                  for p in partitions}
        if on_total is not None:
            on_total(sum(max(0, r.end - r.start) for r in ranges.values()))
        if not dry_run:
            producer = make_producer(settings.kafka_bootstrap, "customllm-replay",
                                     logger=offsets.QUIET)
        errors: list[str] = []
        handled: dict[int, set[int]] = {p: set() for p in partitions}
        for message in _read(consumer, dlq_topic, ranges, timeout_s):
            if on_progress is not None:
                on_progress(1)
            p, offset = message.partition(), message.offset()
            stamp = _timestamp(message)
            if marks[p].handled(offset):
                summary.skipped["already handled by an earlier replay"] += 1
                continue
            if _outside(message, since, until):
                summary.add(ReplayItem(p, offset, "skip", "outside the time range",
                                       timestamp=stamp))
                continue
            decision = decide_dlq_record(message.value(), error_types=error_types, rekey=rekey,
                                         target_partitions=target_partitions)
            if decision.action == "replay" and limit is not None and summary.replayed >= limit:
                summary.stopped = f"--limit {limit} reached"
                break
            if decision.action == "replay" and producer is not None:
                _produce(producer, errors, decision.topic or "", decision.key, decision.value,
                         replay_headers(dlq_topic, p, offset), decision.partition)
            if decision.handled:
                handled[p].add(offset)
            summary.add(ReplayItem(
                p, offset, decision.action, decision.reason, decision.topic,
                _key_text(decision.key) if decision.action == "replay" else None,
                decision.error_type, stamp))
        if producer is not None:
            try:
                flush(producer, errors)
            except DeliveryError as exc:
                raise ReplayError(f"replayed messages were not all acknowledged, nothing "
                                  f"recorded (a rerun replays them again): {exc}") from exc
        if not dry_run:
            summary.committed, summary.passed_over = _commit(consumer, dlq_topic, marks, handled,
                                                             timeout_s)
    except KafkaException as exc:
        raise ReplayError(f"Kafka error during the replay of {dlq_topic}: {exc}") from exc
    finally:
        consumer.close()
    return summary


def _commit(consumer: Consumer, topic: str, marks: dict[int, offsets.ReplayMark],
            handled: dict[int, set[int]], timeout_s: float) -> tuple[dict[int, int], int]:
    commits, passed_over, positions = [], 0, {}
    for p, done in handled.items():
        if not done:
            continue
        mark, lost = offsets.advance_mark(marks[p], done)
        passed_over += lost
        offset, metadata = offsets.encode_mark(mark)
        commits.append(TopicPartition(topic, p, offset, metadata=metadata))
        positions[p] = offset
    if commits:
        offsets.retrying(lambda: consumer.commit(offsets=commits, asynchronous=False),
                         timeout_s)
    return positions, passed_over


# --------------------------------------------------------------------------------------------
# Range replay
# --------------------------------------------------------------------------------------------


def replay_topic(
    settings: Settings, topic: str, *, since: datetime, until: datetime | None = None,
    limit: int | None = None, dry_run: bool = False, timeout_s: float = 10.0,
    on_total: Callable[[int], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> ReplaySummary:
    """Produce the messages a source topic received in [since, until) to it again."""
    if topic not in REPLAYABLE_TOPICS:
        raise ReplayError(f"{topic!r} cannot be replayed; source topics: "
                          f"{', '.join(REPLAYABLE_TOPICS)} (for a DLQ use --from)")
    _check_range(since, until)
    summary = ReplaySummary(topic, dry_run)
    consumer = _connect(settings, RANGE_GROUP, timeout_s)
    producer: Producer | None = None
    try:
        partitions = offsets.partitions_of(consumer, topic, timeout_s)
        if partitions is None:
            raise ReplayError(f"topic {topic} does not exist; run `customllm topics`")
        water = offsets.watermarks(consumer, topic, partitions, timeout_s)
        high = {p: water[p][1] for p in partitions}
        starts, ends = _time_bounds(consumer, topic, partitions, since, until, high, timeout_s)
        ranges = {p: _Range(max(water[p][0], starts[p]), ends[p]) for p in partitions}
        if on_total is not None:
            on_total(sum(max(0, r.end - r.start) for r in ranges.values()))
        if not dry_run:
            producer = make_producer(settings.kafka_bootstrap, "customllm-replay",
                                     logger=offsets.QUIET)
        errors: list[str] = []
        for message in _read(consumer, topic, ranges, timeout_s):
            if on_progress is not None:
                on_progress(1)
            p, offset, stamp = message.partition(), message.offset(), _timestamp(message)
            if _outside(message, since, until):
                summary.add(ReplayItem(p, offset, "skip", "outside the time range",
                                       timestamp=stamp))
                continue
            if limit is not None and summary.replayed >= limit:
                summary.stopped = f"--limit {limit} reached"
                break
            if producer is not None:
                _produce(producer, errors, topic, message.key(), message.value(),
                         replay_headers(topic, p, offset, message.headers() or []), p)
            summary.add(ReplayItem(p, offset, "replay", "", topic, _key_text(message.key()),
                                   timestamp=stamp))
        if producer is not None:
            try:
                flush(producer, errors)
            except DeliveryError as exc:
                raise ReplayError(f"replayed messages were not all acknowledged: {exc}") from exc
    except KafkaException as exc:
        raise ReplayError(f"Kafka error during the replay of {topic}: {exc}") from exc
    finally:
        consumer.close()
    return summary
