"""A confluent-kafka producer for CLIs, tests and request/reply clients.

Idempotent with acks=all so retries after a broker restart never duplicate or reorder a key's
events; the stream processors themselves send through Faust.
"""

from __future__ import annotations

from confluent_kafka import KafkaException, Producer

from services.common import kafka_auth
from services.common.telemetry import KafkaHeaders


class DeliveryError(KafkaException):
    """The broker did not acknowledge a message before the producer gave up."""


def make_producer(bootstrap: str, client_id: str = "customllm", **overrides: object) -> Producer:
    config: dict[str, object] = {
        **kafka_auth.client_config(bootstrap),
        "client.id": client_id,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "message.max.bytes": 8_388_608,
        "compression.type": "lz4",
        # Same key → same partition as Java, aiokafka and Faust producers (murmur2), so one
        # document's events stay ordered whichever client publishes them.
        "partitioner": "murmur2_random",
        "delivery.timeout.ms": 300_000,
    }
    config.update(overrides)
    return Producer(config)


def send(producer: Producer, topic: str, key: str | None, value: bytes | None,
         headers: KafkaHeaders | None = None, errors: list[str] | None = None) -> None:
    """Queue one message; delivery failures are appended to ``errors`` when given."""

    def on_delivery(err: object, _msg: object) -> None:
        if err is not None and errors is not None:
            errors.append(str(err))

    while True:
        try:
            producer.produce(topic, key=key.encode() if key is not None else None, value=value,
                             headers=headers or [], on_delivery=on_delivery)
            break
        except BufferError:
            producer.poll(0.5)  # local queue full: let deliveries drain, then retry
    producer.poll(0)


def flush(producer: Producer, errors: list[str], timeout_s: float = 120.0) -> None:
    remaining = producer.flush(timeout_s)
    if remaining:
        raise DeliveryError(f"{remaining} message(s) not delivered within {timeout_s:.0f}s")
    if errors:
        raise DeliveryError(f"{len(errors)} message(s) failed: {errors[0]}")
