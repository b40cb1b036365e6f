"""The recorder's loop: one consumer group over the four topics, offsets committed only after
the records are in Postgres (at-least-once; every write is an idempotent upsert). The pipeline
records of a consumed batch are stored in one transaction (``handlers.record_pipeline``): one
commit per record kept the recorder under the query path's rate
(``benchmarks/audit_throughput.py``).

A plain confluent-kafka consumer rather than a Faust agent: the work is one upsert per record
with no state, joins or timers, and one consumer over several topics keeps a request's pieces
in one process.
"""

from __future__ import annotations

import logging
import signal
import threading

from confluent_kafka import Consumer, KafkaError, Message
from sqlalchemy.exc import OperationalError

from services.audit.handlers import record_feedback, record_pipeline
from services.common import identity, kafka_auth
from services.common import topics as t
from services.common.config import Settings
from services.common.db import make_engine
from services.common.exceptions import InvalidEvent
from services.common.messages import dlq_record
from services.common.producer import flush, make_producer, send

log = logging.getLogger(__name__)
TOPICS = [t.RAG_SCREENED, t.RAG_DRAFTS, t.GUARDRAILS_EVENTS, t.RAG_FEEDBACK]
GROUP = "customllm-audit"
CONSUME_BATCH = 200  # records read at a time, then committed together
# Pipeline records stored per transaction: a whole consumed batch. 1 is the old
# record-at-a-time path, which the throughput benchmark keeps as its baseline.
BATCH_RECORDS = CONSUME_BATCH


class Recorder:
    """Runs until :meth:`stop`; ``run`` is what ``python -m services.audit`` calls."""

    def __init__(self, settings: Settings, group: str = GROUP,
                 batch_records: int = BATCH_RECORDS) -> None:
        self.settings = settings
        self.group = group
        self.batch_records = batch_records
        self.engine = make_engine(settings.sqlalchemy_url, pool_size=2)
        self.authenticator = identity.authenticator_from_settings(settings)
        self.stopping = threading.Event()
        self.stored = 0
        self.refused = 0

    def stop(self) -> None:
        self.stopping.set()

    def run(self) -> None:
        # The PII detector (Presidio + spaCy) takes seconds to load: warm it while the
        # consumer joins its group, not when the first wrong answer needs scrubbing.
        threading.Thread(target=_warm_pii, name="warm-pii", daemon=True).start()
        consumer = Consumer({**kafka_auth.client_config(self.settings.kafka_bootstrap),
                             "group.id": self.group, "enable.auto.commit": False,
                             "auto.offset.reset": "earliest", "client.id": "customllm-audit"})
        producer = make_producer(self.settings.kafka_bootstrap, "customllm-audit")
        consumer.subscribe(TOPICS)
        log.info("audit recorder reading %s", ", ".join(TOPICS))
        try:
            while not self.stopping.is_set():
                batch = [m for m in consumer.consume(CONSUME_BATCH, timeout=1.0) if self._usable(m)]
                if not batch:
                    continue
                # Pipeline records first: feedback in the same batch may be about them.
                pipeline = [m for m in batch if m.topic() != t.RAG_FEEDBACK]
                errors: list[str] = []
                for start in range(0, len(pipeline), self.batch_records):
                    self._record(pipeline[start:start + self.batch_records], producer, errors)
                for message in batch:
                    if message.topic() == t.RAG_FEEDBACK:
                        self._feedback(message, producer, errors)
                flush(producer, errors)
                consumer.commit(asynchronous=False)
        finally:
            consumer.close()
            self.engine.dispose()

    @staticmethod
    def _usable(message: Message) -> bool:
        error = message.error()
        if error is not None and error.code() != KafkaError._PARTITION_EOF:
            log.warning("consumer error: %s", error)
        return error is None and message.value() is not None

    def _record(self, messages: list[Message], producer: object, errors: list[str]) -> None:
        refused = record_pipeline(self.engine, [(m.topic(), m.value()) for m in messages])
        for refusal in refused:
            self._refuse(messages[refusal.index], refusal.error, producer, errors)
        self.stored += len(messages) - len(refused)

    def _feedback(self, message: Message, producer: object, errors: list[str]) -> None:
        try:
            record_feedback(self.engine, self.authenticator, message.value())
            self.stored += 1
        except InvalidEvent as error:
            self._refuse(message, error, producer, errors)
        except OperationalError:
            raise  # the database is down: exit, and resume from the last commit when restarted
        except Exception as exc:  # noqa: BLE001 - a bug on one record must not stop the audit
            log.exception("could not record feedback at %s/%s", message.partition(),
                          message.offset())
            self._refuse(message, InvalidEvent("processing_error",
                                               f"{type(exc).__name__}: {exc}"),
                         producer, errors)

    def _refuse(self, message: Message, error: InvalidEvent, producer: object,
                errors: list[str]) -> None:
        """Dead-letter refused feedback with the reason; log an unreadable pipeline record
        (it comes from a platform stage: a bug to fix, not an attack)."""
        self.refused += 1
        topic = message.topic()
        if topic != t.RAG_FEEDBACK:
            log.error("unreadable %s record at %s/%s: %s", topic, message.partition(),
                      message.offset(), error)
            return
        log.info("feedback refused (%s): %s", error.error_type, error)
        record = dlq_record(topic=topic, partition=message.partition(), offset=message.offset(),
                            key=message.key(), value=None, error=error, service="audit")
        # The original payload is left out on purpose: it holds the caller's credential.
        send(producer, t.RAG_FEEDBACK_DLQ, record.key, record.to_json(), errors=errors)


def _warm_pii() -> None:
    from services.common.pii import analyzer

    try:
        analyzer()
    except Exception:  # noqa: BLE001 - scrubbing will load (or fail) again when needed
        log.exception("could not load the PII detector in advance")


def main(settings: Settings) -> None:
    recorder = Recorder(settings)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: recorder.stop())
    recorder.run()
