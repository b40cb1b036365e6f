"""The broker enforces who may do what: authentication, deny-by-default ACLs, private reply
topics and approved sources, on the real KRaft broker the suite runs."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from services.common import kafka_auth, kafka_provision
from services.common.kafka_acl import client_identity, reply_topic_for, source_identity
from services.common.kafka_auth import KafkaCredentials
from services.common.rpc import ensure_reply_topic
from services.common.topics import DOCS_CHANGES, RAG_SCREENED
from services.stack import local_secrets

pytestmark = pytest.mark.integration


def _identity(stack, name: str) -> KafkaCredentials:
    """A Kafka user with exactly the grants of its kind, as `customllm sources|clients` make."""
    admin = kafka_provision.admin_client(stack.settings.kafka_bootstrap,
                                         local_secrets.admin_credentials(stack.state))
    kafka_provision.provision(admin, name, local_secrets.ensure_password(stack.state, name))
    creds = local_secrets.credentials_of(stack.state, name)
    kafka_provision.wait_until_accepted(stack.settings.kafka_bootstrap, creds)
    return creds


def _produce(stack, creds: KafkaCredentials, topic: str) -> str | None:
    """The delivery error for one message, or None when the broker accepted it."""
    config = kafka_auth.client_config(stack.settings.kafka_bootstrap, creds=creds)
    producer = Producer({**config, "message.timeout.ms": 10000})
    errors: list[str] = []
    producer.produce(topic, key=b"k", value=b"{}",
                     on_delivery=lambda err, _m: errors.append(str(err)) if err else None)
    producer.flush(15)
    return errors[0] if errors else None


def test_a_client_without_credentials_is_refused(stack):
    plain = AdminClient({"bootstrap.servers": stack.settings.kafka_bootstrap,
                         "security.protocol": "PLAINTEXT"})
    with pytest.raises(KafkaException):
        plain.list_topics(timeout=5)


def test_a_wrong_password_is_refused(stack):
    config = kafka_auth.client_config(stack.settings.kafka_bootstrap,
                                      creds=KafkaCredentials("operator", "not-the-password",
                                                             "SCRAM-SHA-512"))
    with pytest.raises(KafkaException):
        AdminClient(config).list_topics(timeout=5)


def test_only_an_approved_source_writes_docs_changes(stack):
    operator = local_secrets.credentials_of(stack.state, "operator")
    assert "TOPIC_AUTHORIZATION_FAILED" in (_produce(stack, operator, DOCS_CHANGES) or "")
    source = _identity(stack, source_identity(f"wiki-{uuid.uuid4().hex[:6]}"))
    assert _produce(stack, source, DOCS_CHANGES) is None
    # A source cannot impersonate a stage either.
    assert "TOPIC_AUTHORIZATION_FAILED" in (_produce(stack, source, RAG_SCREENED) or "")


def test_only_guardrails_writes_the_screened_topic(stack):
    client = _identity(stack, client_identity(f"app-{uuid.uuid4().hex[:6]}"))
    assert "TOPIC_AUTHORIZATION_FAILED" in (_produce(stack, client, RAG_SCREENED) or "")
    guardrails = local_secrets.credentials_of(stack.state, "guardrails")
    assert _produce(stack, guardrails, RAG_SCREENED) is None


def _read(stack, creds: KafkaCredentials, topic: str) -> tuple[str, object]:
    """What this identity gets from the topic: ("message", None), ("error", name) or
    ("nothing", the topic's metadata error as this identity sees it)."""
    config = kafka_auth.client_config(stack.settings.kafka_bootstrap, creds=creds)
    consumer = Consumer({**config, "group.id": f"customllm-{creds.username}-t-{uuid.uuid4().hex}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        for _ in range(20):
            message = consumer.poll(0.5)
            if message is not None and message.error():
                return "error", message.error().name()
            if message is not None:
                return "message", None
        seen = consumer.list_topics(topic, timeout=10).topics.get(topic)
        return "nothing", seen.error if seen is not None else "not visible"
    finally:
        consumer.close()


def test_client_a_cannot_read_client_b_replies(stack):
    a = _identity(stack, client_identity(f"a-{uuid.uuid4().hex[:6]}"))
    b = _identity(stack, client_identity(f"b-{uuid.uuid4().hex[:6]}"))
    topic_b = reply_topic_for(b.username)
    ensure_reply_topic(stack.settings.kafka_bootstrap, topic_b, 1, creds=b)  # created by B
    guardrails = local_secrets.credentials_of(stack.state, "guardrails")
    assert _produce(stack, guardrails, topic_b) is None  # the answer lands in B's topic
    assert _read(stack, b, topic_b) == ("message", None)
    outcome, why = _read(stack, a, topic_b)  # librdkafka treats it as a topic it cannot see
    assert outcome in ("nothing", "error") and why is not None
    assert "AUTHORIZATION" in str(why).upper() or why == "not visible", why
    # Nor can A create a reply topic in B's name.
    with pytest.raises(Exception, match="(?i)authoriz"):
        ensure_reply_topic(stack.settings.kafka_bootstrap, topic_b + ".x", 1, creds=a)


def test_acls_are_complete_and_reapplying_adds_none(stack):
    admin = kafka_provision.admin_client(stack.settings.kafka_bootstrap,
                                         local_secrets.admin_credentials(stack.state))
    for name in ("ingest", "embedder", "guardrails", "rag", "gateway", "finetune", "operator"):
        assert kafka_provision.missing_grants(admin, name) == [], name
        assert kafka_provision.apply_grants(admin, name) == 0


def test_revoking_a_source_removes_its_access(stack):
    name = source_identity(f"gone-{uuid.uuid4().hex[:6]}")
    creds = _identity(stack, name)
    assert _produce(stack, creds, DOCS_CHANGES) is None
    admin = kafka_provision.admin_client(stack.settings.kafka_bootstrap,
                                         local_secrets.admin_credentials(stack.state))
    assert kafka_provision.revoke_all(admin, name) > 0
    kafka_provision.delete_user(admin, name)
    assert _produce(stack, creds, DOCS_CHANGES) is not None
