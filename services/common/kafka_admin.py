"""Idempotent topic creation and broker checks with confluent-kafka's AdminClient."""

from __future__ import annotations

import time
from collections.abc import Iterable

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from services.common import kafka_auth
from services.common.kafka_auth import KafkaCredentials
from services.common.topics import TOPICS, TopicSpec

__all__ = ["AdminClient", "admin", "describe_topics", "ensure_topics"]


def admin(bootstrap: str, creds: KafkaCredentials | None = None) -> AdminClient:
    """An admin client as this process's identity (or ``creds``): what it may do is what the
    broker's ACLs allow that identity."""
    return AdminClient(kafka_auth.client_config(bootstrap, creds=creds))


def ensure_topics(
    bootstrap: str, partitions: int, replication: int, specs: Iterable[TopicSpec] = TOPICS,
    creds: KafkaCredentials | None = None,
) -> list[str]:
    """Create the missing topics; return the names created. Existing topics are left as they
    are (partitions are never shrunk, data never touched). Needs an identity allowed to create
    topics (the admin)."""
    client = admin(bootstrap, creds)
    existing = set(client.list_topics(timeout=10).topics)
    wanted = [
        NewTopic(spec.name, num_partitions=spec.partitions or partitions,
                 replication_factor=replication, config=spec.config)
        for spec in specs if spec.name not in existing
    ]
    if not wanted:
        return []
    created: list[str] = []
    for name, future in client.create_topics(wanted, operation_timeout=30).items():
        try:
            future.result()
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    _wait_for_leaders(client, created)
    return created


def _wait_for_leaders(client: AdminClient, topics: list[str], timeout_s: float = 30.0) -> None:
    """Creation returns before every partition has a leader; callers then produce or read
    offsets at once, so wait until the metadata shows leaders."""
    deadline = time.monotonic() + timeout_s
    while topics and time.monotonic() < deadline:
        metadata = client.list_topics(timeout=10).topics
        if all(name in metadata and metadata[name].error is None
               and all(p.leader >= 0 for p in metadata[name].partitions.values())
               for name in topics):
            return
        time.sleep(0.2)


def describe_topics(bootstrap: str) -> dict[str, int]:
    """Topic name → partition count, for `status` and `doctor`."""
    metadata = admin(bootstrap).list_topics(timeout=10)
    return {name: len(topic.partitions) for name, topic in metadata.topics.items()
            if not name.startswith("__")}
