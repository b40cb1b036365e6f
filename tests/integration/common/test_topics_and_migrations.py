"""What `customllm up` sets up must be repeatable and durable: topics with their retention and
compaction, the schema at head with its search indexes, and topics surviving a broker restart."""

import uuid

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import ConfigResource, ResourceType

from services.common import kafka_admin, kafka_auth, migrate
from services.common.topics import DAY_MS, DOCS_CHANGES, DOCS_STATUS, TOPICS, TopicSpec
from services.stack import kafka

pytestmark = pytest.mark.integration


def _configs(stack, topic: str) -> dict[str, str]:
    resource = ConfigResource(ResourceType.TOPIC, topic)
    client = kafka_admin.admin(stack.settings.kafka_bootstrap)  # must outlive the future
    entries = client.describe_configs([resource])[resource].result(timeout=30)
    return {name: entry.value for name, entry in entries.items()}


def _ensure(stack, specs=TOPICS) -> list[str]:
    settings = stack.settings
    return kafka_admin.ensure_topics(settings.kafka_bootstrap, settings.topic_partitions,
                                     settings.topic_replication, specs)


def test_ensure_topics_is_idempotent(stack):
    before = kafka_admin.describe_topics(stack.settings.kafka_bootstrap)
    assert {spec.name: before[spec.name] for spec in TOPICS} == {spec.name: 3 for spec in TOPICS}
    assert _ensure(stack) == []
    assert kafka_admin.describe_topics(stack.settings.kafka_bootstrap) == before


def test_ensure_topics_creates_only_what_is_missing(stack):
    spec = TopicSpec(f"tests.ensure.{uuid.uuid4().hex[:8]}", None, "test", {}, partitions=2)
    assert _ensure(stack, [TOPICS[0], spec]) == [spec.name]
    assert _ensure(stack, [TOPICS[0], spec]) == []
    assert kafka_admin.describe_topics(stack.settings.kafka_bootstrap)[spec.name] == 2


def test_status_topic_is_compacted_with_30_day_retention(stack):
    configs = _configs(stack, DOCS_STATUS)
    assert "compact" in configs["cleanup.policy"].split(",")
    assert configs["retention.ms"] == str(30 * DAY_MS)


def test_changes_topic_keeps_a_week_and_accepts_8_mib(stack):
    configs = _configs(stack, DOCS_CHANGES)
    assert configs["retention.ms"] == str(7 * DAY_MS) == "604800000"
    assert configs["max.message.bytes"] == "8388608"
    assert configs["cleanup.policy"] == "delete"


def test_migrations_are_at_head(stack):
    url = stack.settings.sqlalchemy_url
    head = migrate.head_revision(url)
    assert head is not None
    assert migrate.current_revision(url) == head


def test_vectors_are_indexed_per_model_and_chunks_by_full_text(stack):
    indexes = dict(stack.query(
        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'chunks'"))
    assert "USING gin (tsv)" in indexes["chunks_tsv_idx"]
    # Queries read the per-model index of chunk_embeddings; an HNSW index on chunks.embedding
    # would only cost an insertion per chunk (migration 0015 dropped it).
    assert not any("hnsw" in definition for definition in indexes.values())
    active = stack.query("SELECT model_id FROM index_models WHERE state = 'active'")[0][0]
    per_model = dict(stack.query(
        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'chunk_embeddings'"))
    (definition,) = [d for d in per_model.values() if "hnsw" in d and active in d]
    assert "vector_cosine_ops" in definition


def test_search_gin_indexes_are_written_through(stack):
    # A pending list turns every lexical query into sequential scans until a VACUUM merges it.
    options = dict(stack.query(
        "SELECT relname, reloptions FROM pg_class WHERE relname IN "
        "('chunks_tsv_idx', 'documents_acl_idx', 'documents_metadata_idx', "
        "'answer_cache_docs_idx')"))
    for index in ("chunks_tsv_idx", "documents_acl_idx", "documents_metadata_idx"):
        assert "fastupdate=off" in (options[index] or []), index
    assert not options["answer_cache_docs_idx"]  # written per answer: keeps the default


def test_topics_and_messages_survive_a_broker_restart(stack):
    bootstrap = stack.settings.kafka_bootstrap
    spec = TopicSpec(f"tests.restart.{uuid.uuid4().hex[:8]}", None, "test", {}, partitions=1)
    _ensure(stack, [spec])
    producer = Producer({**kafka_auth.client_config(bootstrap)})
    producer.produce(spec.name, key=b"k", value=b"kept across restarts")
    assert producer.flush(30) == 0
    before = kafka_admin.describe_topics(bootstrap)
    old_pid = kafka.pid(stack.state)

    stack.restart_kafka()

    assert kafka.pid(stack.state) not in (None, old_pid)
    assert kafka_admin.describe_topics(bootstrap) == before
    assert _configs(stack, DOCS_STATUS)["cleanup.policy"] == "compact,delete"
    consumer = Consumer({**kafka_auth.client_config(bootstrap),
                         "group.id": f"tests-{uuid.uuid4().hex}", "enable.auto.commit": False})
    consumer.assign([TopicPartition(spec.name, 0, 0)])
    try:
        message = None
        for _ in range(60):
            message = consumer.poll(0.5)
            if message is not None and not message.error():
                break
        assert message is not None and (message.key(), message.value()) == (
            b"k", b"kept across restarts")
    finally:
        consumer.close()
