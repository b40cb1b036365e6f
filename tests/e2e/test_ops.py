"""Operating the running platform: a dead-lettered document is fixed by a replay, the replay
is recorded so it never runs twice, and `doctor` sees the workers keep up.

The scenario: a producer publishes a valid document event under the wrong key (the key must be
the doc_id, so one document's events stay ordered). The ingest worker dead-letters it as
key_mismatch. The fix is to re-key it from its doc_id: `customllm replay --from
docs.changes.dlq --error-type key_mismatch --rekey-from-doc-id`.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest
from typer.testing import CliRunner

from services.cli import ops_cmds
from services.cli.main import app
from services.common import kafka_offsets as offsets
from services.common.topics import DOCS_CHANGES, DOCS_CHANGES_DLQ
from services.ops import doctor
from services.ops.replay import replay_group
from tests.support.documents import paragraphs, unique_prefix
from tests.support.stack import wait_for

pytestmark = pytest.mark.e2e


def _high(stack, topic: str) -> dict[int, int]:
    consumer = offsets.open_consumer(stack.settings.kafka_bootstrap, "tests-ops", 5)
    try:
        partitions = offsets.partitions_of(consumer, topic, 5)
        return {p: high for p, (_low, high) in
                offsets.watermarks(consumer, topic, partitions, 5).items()}
    finally:
        consumer.close()


def _replay_marks(stack) -> dict:
    consumer = offsets.open_consumer(stack.settings.kafka_bootstrap,
                                     replay_group(DOCS_CHANGES_DLQ), 5)
    try:
        partitions = offsets.partitions_of(consumer, DOCS_CHANGES_DLQ, 5)
        return offsets.committed(consumer, DOCS_CHANGES_DLQ, partitions, 5)
    finally:
        consumer.close()


def test_a_dead_lettered_document_is_fixed_by_a_replay_exactly_once(stack, workers,
                                                                    monkeypatch):
    doc_id = unique_prefix("ops") + "rekey.md"
    wrong_key = f"wrong-key-{uuid.uuid4().hex[:8]}".encode()
    payload = {"doc_id": doc_id, "version": 1, "op": "upsert",
               "content": "\n\n".join(paragraphs(77, 3)), "content_type": "text/markdown",
               "event_time": datetime.now(UTC).isoformat()}
    since = datetime.now(UTC).isoformat()
    stack.publish_raw([(wrong_key, json.dumps(payload).encode())])

    (record,) = [json.loads(v) for _k, v in stack.read_topic(
        DOCS_CHANGES_DLQ, lambda k, _v: k == wrong_key, expected=1)]
    assert record["error_type"] == "key_mismatch" and record["key"] == wrong_key.decode()
    assert stack.status(doc_id) is None

    runner = CliRunner()
    monkeypatch.setattr(ops_cmds, "get_settings", lambda: stack.settings)
    command = ["replay", "--from", DOCS_CHANGES_DLQ, "--error-type", "key_mismatch",
               "--since", since, "--rekey-from-doc-id"]

    # A dry run lists the fix and changes nothing.
    source_before, marks_before = _high(stack, DOCS_CHANGES), _replay_marks(stack)
    dry = runner.invoke(app, [*command, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "would replay 1 message(s)" in dry.output and "rekeyed from doc_id" in dry.output
    assert _high(stack, DOCS_CHANGES) == source_before
    assert _replay_marks(stack) == marks_before
    assert stack.status(doc_id) is None

    done = runner.invoke(app, command)
    assert done.exit_code == 0, done.output
    assert "replayed 1 message(s) (1 to docs.changes)" in done.output
    assert f"consumer group {replay_group(DOCS_CHANGES_DLQ)}" in done.output
    stack.wait_indexed({doc_id: 1})
    status = stack.status(doc_id)
    assert status.state == "indexed" and status.chunks_total >= 1
    assert stack.query("SELECT count(*) FROM chunks WHERE doc_id = :d", d=doc_id)[0][0] >= 1

    # The replay is recorded: a second one finds nothing left to do.
    again = runner.invoke(app, command)
    assert again.exit_code == 0, again.output
    assert "replayed 0 message(s)" in again.output
    assert stack.status(doc_id).last_version == 1

    # doctor: the ingest worker has committed offsets and keeps up; nothing is broken.
    def ingest_caught_up() -> bool:
        check = {c.name: c for c in doctor.lag_checks(stack.settings, 5, 1000)}[
            "lag customllm-ingest"]
        return check.status == "ok" and check.detail.startswith("0 behind")

    wait_for(ingest_caught_up, 60, interval_s=1, what="the ingest group's lag to reach 0")
    checks = doctor.run_checks(stack.settings, timeout_s=5)
    assert not doctor.failed(checks), [(c.name, c.detail) for c in doctor.failed(checks)]
