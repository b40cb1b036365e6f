"""`customllm doctor` against the real test stack, and against parts that are down.

The shared stack is never stopped: a broken part is simulated with settings that point at a
closed port (nothing listens) or at a socket that accepts connections and never answers.
"""

from __future__ import annotations

import socket
import time
import uuid

import pytest
from confluent_kafka import TopicPartition
from typer.testing import CliRunner

from services.cli import ops_cmds
from services.cli.main import app
from services.common import kafka_admin
from services.common import kafka_offsets as offsets
from services.common.config import Settings
from services.common.producer import flush, make_producer
from services.common.topics import TopicSpec
from services.ops import doctor
from services.ops.doctor import CONSUMER_GROUPS, DLQ_TOPICS, check_kafka, failed, run_checks

pytestmark = pytest.mark.integration

TIMEOUT_S = 2.0


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _by_name(checks: list[doctor.Check]) -> dict[str, doctor.Check]:
    return {check.name: check for check in checks}


def test_doctor_finds_the_test_stack_healthy(stack):
    checks = run_checks(stack.settings, timeout_s=5)
    by_name = _by_name(checks)
    assert not failed(checks), [(c.name, c.detail) for c in failed(checks)]
    assert not [c for c in checks if c.status == "skip"]
    assert by_name["kafka"].status == "ok" and "cluster" in by_name["kafka"].detail
    assert by_name["postgres"].status == "ok" and "PostgreSQL" in by_name["postgres"].detail
    assert by_name["pgvector"].status == "ok" and "vector" in by_name["pgvector"].detail
    assert by_name["migrations"].status == "ok" and "at head" in by_name["migrations"].detail
    assert by_name["topics"].status == "ok"
    assert by_name["kafka auth"].status == "ok" and "refused" in by_name["kafka auth"].detail
    assert by_name["kafka acls"].status == "ok"
    assert by_name["embedding model"].status == "ok"
    assert by_name["generation model"].status == "ok"
    assert ".gguf" in by_name["generation model"].detail
    for group in CONSUMER_GROUPS:
        # Without workers: "no committed offsets" is information, not a failure.
        assert by_name[f"lag {group}"].status in ("ok", "info"), by_name[f"lag {group}"]
    for topic in DLQ_TOPICS:
        assert by_name[f"dlq {topic}"].status in ("ok", "info", "warn")


def test_doctor_names_kafka_when_no_broker_listens(stack):
    port = _closed_port()
    settings = Settings(kafka_bootstrap=f"127.0.0.1:{port}",
                        database_url=stack.settings.sqlalchemy_url)
    started = time.monotonic()
    checks = run_checks(settings, timeout_s=TIMEOUT_S)
    assert time.monotonic() - started < 30
    by_name = _by_name(checks)
    assert [c.name for c in failed(checks)] == ["kafka"]
    assert f"127.0.0.1:{port}" in by_name["kafka"].detail
    assert "refused" in by_name["kafka"].detail.lower()
    assert "CUSTOMLLM_KAFKA_BOOTSTRAP" in by_name["kafka"].hint
    assert by_name["postgres"].status == by_name["migrations"].status == "ok"
    skipped = {c.name for c in checks if c.status == "skip"}
    assert skipped == {"topics", *(f"lag {g}" for g in CONSUMER_GROUPS),
                       *(f"dlq {t}" for t in DLQ_TOPICS)}
    assert all("Kafka" in by_name[name].detail for name in skipped)


def test_doctor_names_postgres_when_no_database_listens(stack):
    port = _closed_port()
    settings = Settings(kafka_bootstrap=stack.settings.kafka_bootstrap,
                        database_url=f"postgresql+psycopg://postgres@127.0.0.1:{port}/customllm")
    started = time.monotonic()
    checks = run_checks(settings, timeout_s=TIMEOUT_S)
    assert time.monotonic() - started < 30
    by_name = _by_name(checks)
    assert [c.name for c in failed(checks)] == ["postgres"]
    assert f"127.0.0.1:{port}" in by_name["postgres"].detail
    assert by_name["pgvector"].status == by_name["migrations"].status == "skip"
    assert "Postgres" in by_name["migrations"].detail
    assert by_name["kafka"].status == by_name["topics"].status == "ok"


def test_a_broker_that_accepts_connections_but_never_answers_times_out(stack):
    """(The stack only provides this process's Kafka credentials.)"""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        settings = Settings(kafka_bootstrap=f"127.0.0.1:{silent.getsockname()[1]}")
        started = time.monotonic()
        check = check_kafka(settings, TIMEOUT_S)
        elapsed = time.monotonic() - started
    assert not check.ok and "no metadata" in check.detail
    assert elapsed < TIMEOUT_S * 4


def test_lag_is_end_minus_committed_offsets_summed_per_group(stack, monkeypatch):
    settings = stack.settings
    topic, group = f"tests.lag.{uuid.uuid4().hex[:8]}", f"tests-lag-{uuid.uuid4().hex[:8]}"
    kafka_admin.ensure_topics(settings.kafka_bootstrap, 2, 1, [TopicSpec(topic, None, "t",
                                                                         partitions=2)])
    producer, errors = make_producer(settings.kafka_bootstrap, "tests-lag"), []
    for _ in range(5):
        producer.produce(topic, value=b"x", partition=0)
    for _ in range(3):
        producer.produce(topic, value=b"y", partition=1)
    flush(producer, errors)
    monkeypatch.setattr(doctor, "CONSUMER_GROUPS", {group: (topic,)})

    (check,) = doctor.lag_checks(settings, 5, threshold=1)
    assert check.status == "info" and "no committed offsets" in check.detail
    assert "8 behind" in check.detail  # a group that never committed starts at the beginning

    consumer = offsets.open_consumer(settings.kafka_bootstrap, group, 5)
    try:
        consumer.commit(offsets=[TopicPartition(topic, 0, 4)], asynchronous=False)
    finally:
        consumer.close()
    (check,) = doctor.lag_checks(settings, 5, threshold=1)
    assert check.status == "warn" and check.detail.startswith("4 behind")  # 1 + 3
    (check,) = doctor.lag_checks(settings, 5, threshold=10)
    assert check.status == "ok"


def test_deep_check_loads_the_embedding_model(stack):
    check = doctor.check_embedding_model(stack.settings, deep=True)
    assert check.status == "ok", check.detail
    assert f"{stack.settings.embedding_dim} dimensions" in check.detail


def test_doctor_command_renders_the_report_and_exits_by_result(stack, monkeypatch):
    runner = CliRunner()
    monkeypatch.setattr(ops_cmds, "get_settings", lambda: stack.settings)
    healthy = runner.invoke(app, ["doctor", "--timeout", "5"])
    assert healthy.exit_code == 0, healthy.output
    assert "kafka" in healthy.output and "0 failed" in healthy.output

    broken = Settings(kafka_bootstrap=f"127.0.0.1:{_closed_port()}",
                      database_url=stack.settings.sqlalchemy_url)
    monkeypatch.setattr(ops_cmds, "get_settings", lambda: broken)
    result = runner.invoke(app, ["doctor", "--timeout", "2"])
    assert result.exit_code == 1, result.output
    assert "broken: kafka" in result.output


def test_doctor_reports_a_missing_acl(stack):
    """The ACL taken away is the audit recorder's, which no process of the suite runs at this
    point: a running worker that loses one exits (the embedder did, and every later test that
    needed indexing waited for it in vain)."""
    from confluent_kafka.admin import AclBindingFilter

    from services.common import kafka_provision
    from services.stack import local_secrets
    from services.stack import services as worker_procs

    assert worker_procs.processes.read_pid(worker_procs.run_dir(stack.state), "audit") is None
    admin = kafka_provision.admin_client(stack.settings.kafka_bootstrap,
                                         local_secrets.admin_credentials(stack.state))
    [b, *_] = kafka_provision.current_bindings(admin, "audit")
    one = AclBindingFilter(b.restype, b.name, b.resource_pattern_type, b.principal, b.host,
                           b.operation, b.permission_type)
    for future in admin.delete_acls([one]).values():
        future.result()
    try:
        by_name = _by_name(run_checks(stack.settings, timeout_s=5))
        assert by_name["kafka acls"].status == "fail"
        assert "audit (1)" in by_name["kafka acls"].detail
    finally:
        assert kafka_provision.apply_grants(admin, "audit") == 1
