"""The shared stream-processor error policy on the real broker, in a real worker process:
bad data and bugs are dead-lettered with the reason (and the sender told) while the stream
goes on; a dependency that stays down makes the worker exit without committing, and the
restarted worker re-reads the message once the dependency is back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from services.common import kafka_admin
from services.common.producer import flush, make_producer, send
from services.common.topics import TopicSpec

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
RUN = ("from services.common.worker import run_worker; "
       "run_worker('tests.support.poison_worker', 'poison')")


def _start(source: str, name: str, log: Path, **env: str) -> subprocess.Popen:
    return subprocess.Popen(  # noqa: S603 - a fixed argv
        [sys.executable, "-c", RUN], cwd=ROOT, stdout=log.open("ab"), stderr=subprocess.STDOUT,
        env={**os.environ, "POISON_SOURCE": source, "POISON_NAME": name, **env})


def _values(stack, topic: str, expected: int, timeout_s: float = 90) -> list[bytes]:
    return [v for _, v in stack.read_topic(topic, lambda _k, _v: True, expected, timeout_s)]


def _publish(stack, topic: str, values: list[bytes]) -> None:
    producer, errors = make_producer(stack.settings.kafka_bootstrap), []
    for n, value in enumerate(values):
        send(producer, topic, f"k{n}", value, errors=errors)
    flush(producer, errors)


@pytest.fixture()
def poison_topics(stack):
    source = f"tests.poison.{uuid.uuid4().hex[:8]}"
    specs = [TopicSpec(name, None, "processor policy test")
             for name in (source, f"{source}.out", f"{source}.notices", f"{source}.dlq")]
    kafka_admin.ensure_topics(stack.settings.kafka_bootstrap, 1, 1, specs)
    return source


def test_poison_messages_are_dead_lettered_and_the_stream_goes_on(stack, poison_topics, tmp_path):
    source = poison_topics
    _publish(stack, source, [b"ok:1", b"bug:2", b"bad:3", b"flaky:4", b"ok:5"])
    worker = _start(source, f"poison-{uuid.uuid4().hex[:6]}", tmp_path / "worker.log")
    try:
        out = _values(stack, f"{source}.out", 3)
        assert out == [b"ok:1", b"flaky:4", b"ok:5"], (tmp_path / "worker.log").read_text()[-3000:]
        records = [json.loads(v) for v in _values(stack, f"{source}.dlq", 2)]
        by_payload = {r["payload"]: r for r in records}
        assert by_payload["bug:2"]["error_type"] == "processing_error"
        assert "ZeroDivisionError" in by_payload["bug:2"]["reason"]
        assert by_payload["bad:3"]["error_type"] == "schema_violation"
        assert all(r["original_topic"] == source and r["service"] == "poison" for r in records)
        notices = _values(stack, f"{source}.notices", 2)
        assert sorted(n.split(b":")[0] for n in notices) == [b"processing_error",
                                                              b"schema_violation"]
        assert worker.poll() is None, "one poison message must not stop the worker"
    finally:
        worker.terminate()
        worker.wait(30)


def test_a_dependency_that_stays_down_exits_the_worker_and_the_message_is_read_again(
        stack, poison_topics, tmp_path):
    source, name, log = poison_topics, f"poison-{uuid.uuid4().hex[:6]}", tmp_path / "w.log"
    _publish(stack, source, [b"ok:1", b"down:2", b"ok:3"])
    worker = _start(source, name, log)
    try:
        assert _values(stack, f"{source}.out", 1) == [b"ok:1"]
        deadline = time.monotonic() + 120
        while worker.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        assert worker.returncode == 70, log.read_text()[-3000:]
    finally:
        if worker.poll() is None:
            worker.kill()
    assert _values(stack, f"{source}.dlq", 1, timeout_s=3) == []  # not dead-lettered: not bad data
    restarted = _start(source, name, log, POISON_RECOVERED="1")
    try:
        out = _values(stack, f"{source}.out", 3)
        assert out == [b"ok:1", b"down:2", b"ok:3"], log.read_text()[-3000:]
    finally:
        restarted.terminate()
        restarted.wait(30)
