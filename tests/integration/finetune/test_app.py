"""The finetune worker's intake (services/finetune/app.py) on the real broker and database:
poison requests on ``finetune.requests`` are dead-lettered with the original payload, one that
names a new job gets a ``failed`` event saying why, one that claims the id of a job already
stored leaves that job and its events as they were, and the same process queues the next valid
request.

A request that is valid JSON but unrunnable (unknown hyperparameters) is in test_jobs.py. An
oversized request cannot reach this worker: the broker's message limit on the topic is below
the intake's own. The jobs here name a snapshot that does not exist, so the executor fails them
at once instead of training.
"""

from __future__ import annotations

import json
import uuid

import pytest

from services.common.events import FinetuneDataset, FinetuneRequest
from services.common.topics import FINETUNE_EVENTS, FINETUNE_REQUESTS, FINETUNE_REQUESTS_DLQ
from tests.support.finetune import job_events
from tests.support.guarded import records_for
from tests.support.poison import assert_dead_lettered, records_so_far, worker_pid
from tests.support.stack import Workers

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def finetune_worker(stack):
    running = Workers(stack, {"CUSTOMLLM_FINETUNE_POLL_S": "0.5",
                              "CUSTOMLLM_OTEL_EXPORTER": "none"}, names=("finetune",))
    running.start_all()
    yield running
    running.stop_all()


def _request(job_id: str) -> FinetuneRequest:
    return FinetuneRequest(job_id=job_id, adapter_name="poison-check", promote="never",
                           dataset=FinetuneDataset(snapshot_id=f"missing-{uuid.uuid4().hex}"),
                           hyperparameters={"max_steps": 1})


def _job_row(stack, job_id: str) -> list[tuple]:
    return [tuple(r) for r in stack.query("SELECT * FROM finetune_jobs WHERE job_id = :j",
                                          j=job_id)]


def test_poison_requests_are_dead_lettered_and_the_intake_goes_on(stack, finetune_worker):
    bootstrap = stack.settings.kafka_bootstrap
    stored = _request(f"ft-stored-{uuid.uuid4().hex[:8]}")
    stack.publish_raw([(stored.job_id.encode(), stored.to_json())], topic=FINETUNE_REQUESTS)
    assert job_events(bootstrap, stored.job_id, {"completed", "failed"}, 180)[-1].status == \
        "failed"
    row_before = _job_row(stack, stored.job_id)
    pid = worker_pid(stack, "finetune")

    broken_id = f"ft-broken-{uuid.uuid4().hex[:8]}"
    broken = b'{"job_id": "' + broken_id.encode() + b'", "adapter_name": "poi'

    def retyped(job_id: str) -> bytes:
        return json.dumps({**json.loads(_request(job_id).to_json()), "method": "full",
                           "hyperparameters": "as many steps as it takes"}).encode()

    # A new job with the wrong types, and the same claiming the stored job's id.
    fresh_id = f"ft-fresh-{uuid.uuid4().hex[:8]}"
    fresh, claiming = retyped(fresh_id), retyped(stored.job_id)
    stack.publish_raw([(broken_id.encode(), broken), (fresh_id.encode(), fresh),
                       (stored.job_id.encode(), claiming)], topic=FINETUNE_REQUESTS)

    [broken_record] = records_for(stack, FINETUNE_REQUESTS_DLQ, broken_id, timeout_s=60)
    assert_dead_lettered(broken_record, service="finetune", source=FINETUNE_REQUESTS,
                         value=broken, error_type="malformed_json")
    for job_id, value in ((fresh_id, fresh), (stored.job_id, claiming)):
        [record] = records_for(stack, FINETUNE_REQUESTS_DLQ, job_id, timeout_s=60)
        assert_dead_lettered(record, service="finetune", source=FINETUNE_REQUESTS,
                             value=value, error_type="schema_violation")
    # Whoever follows a new job learns at once why its request was refused.
    [rejected] = [json.loads(v) for _k, v in stack.read_topic(
        FINETUNE_EVENTS, lambda k, v: k == fresh_id.encode() and b"rejected: " in v, 1)]
    assert rejected["status"] == "failed" and rejected["error"].startswith("rejected: ")
    assert _job_row(stack, stored.job_id) == row_before
    assert _job_row(stack, broken_id) == _job_row(stack, fresh_id) == []

    after = _request(f"ft-after-{uuid.uuid4().hex[:8]}")
    stack.publish_raw([(after.job_id.encode(), after.to_json())], topic=FINETUNE_REQUESTS)
    queued = job_events(bootstrap, after.job_id, {"queued"}, 60)
    assert [e.status for e in queued] == ["queued"] and queued[0].adapter_name == "poison-check"
    assert worker_pid(stack, "finetune") == pid, "a poison request restarted finetune"
    # The intake handles one message at a time, so by now every send for the claiming request
    # is on the topic: the stored job's followers never saw a "failed" it did not have.
    stored_events = records_so_far(stack, FINETUNE_EVENTS, stored.job_id)
    assert not any((e.get("error") or "").startswith("rejected: ") for e in stored_events)
