"""The retraining policy on the real Postgres (issue 17, item 3): it counts the approved
examples its filter selects that are not in the previous automatic job's snapshot, snapshots
them when the policy says so and queues one job per snapshot however often it is asked; the
console shows the automatic job, why it was queued and how it ended.

The publish is the intake's own insert here (the worker's Kafka path is driven end to end in
``tests/e2e/test_closed_loop.py``)."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from services.common.config import get_settings
from services.console.app import create_app
from services.console.config import ConsoleSettings
from services.finetune import auto_retrain, jobs, supervision
from services.finetune.auto_retrain import RetrainPolicy
from services.finetune.examples import ChatExample
from tests.integration.console.conftest import VIEWER, csrf_of
from tests.support.keys import key_for

pytestmark = pytest.mark.integration
BASE = "HuggingFaceTB/SmolLM2-135M-Instruct"


def _approve(stack, source: str, n: int, start: int = 0, privacy: str = "internal") -> None:
    for i in range(start, start + n):
        supervision.add_example(stack.engine, ChatExample(messages=[
            {"role": "user", "content": f"How many desks are on floor {i}?"},
            {"role": "assistant", "content": f"{i + 10} desks [1]."}]),
            source=source, approved_by="sita-sme", privacy_class=privacy)


def _intake(stack, published: list):
    def publish(request) -> None:
        published.append(request)
        jobs.insert_job(stack.engine, request, BASE)
    return publish


def _finish(stack, job_id: str, passed: bool) -> None:
    gate = {"passed": passed, "reason": "no metric worse beyond tolerance" if passed else
            "f1 worse by 0.3 (tolerance 0.02)", "checked": ["f1"], "failures":
            [] if passed else ["f1"], "baseline": "base", "candidate": "x@v1"}
    with stack.engine.begin() as conn:
        conn.execute(text("UPDATE finetune_jobs SET status = 'completed', adapter_version = 1, "
                          "finished_at = now(), result = CAST(:r AS jsonb) WHERE job_id = :j"),
                     {"j": job_id, "r": json.dumps({"gate": gate, "promoted": passed})})


def test_the_policy_queues_once_per_snapshot_and_waits_for_new_approvals(stack):
    source, adapter = f"tests-auto-{uuid.uuid4().hex[:8]}", f"auto{uuid.uuid4().hex[:6]}"
    policy = RetrainPolicy(enabled=True, adapter=adapter, min_new_examples=2,
                           sources=(source,), hyperparameters={"max_steps": 2})
    published: list = []
    publish = _intake(stack, published)

    _approve(stack, source, 1)
    _approve(stack, source, 1, start=50, privacy="restricted")  # above the policy's ceiling
    waiting = auto_retrain.tick(stack.engine, policy, publish)
    assert (waiting.queue, waiting.code, waiting.reason) == (
        False, "below_threshold", "1 of 2 new approved example(s)")

    _approve(stack, source, 1, start=1)
    queued = auto_retrain.tick(stack.engine, policy, publish)
    assert queued.queue and queued.code == "threshold" and queued.job_id
    assert queued.job_id == auto_retrain.job_id_for(adapter, queued.snapshot_id)
    snapshot, examples = supervision.load_snapshot(stack.engine, queued.snapshot_id)
    assert snapshot.n_examples == 2 and len(examples) == 2  # the restricted one is not in it
    job = jobs.get_job(stack.engine, queued.job_id)
    assert job.status == "queued" and job.request.trigger == "auto"
    assert job.request.reason == "2 new approved example(s) reached the threshold of 2"
    outbox = stack.query("SELECT payload FROM finetune_outbox WHERE job_id = :j",
                         j=queued.job_id)
    assert outbox[0].payload["trigger"] == "auto"
    assert "by the retraining policy: 2 new approved" in outbox[0].payload["message"]

    # Asked again while the job is live: nothing more; a second worker (or a restart) that
    # decided before the job was recorded publishes the same job id, queued once.
    assert auto_retrain.tick(stack.engine, policy, publish).code == "live_job"
    assert not jobs.insert_job(stack.engine, published[-1], BASE)

    _finish(stack, queued.job_id, passed=False)
    done = auto_retrain.tick(stack.engine, policy, publish)
    assert (done.queue, done.code) == (False, "nothing_new")
    _approve(stack, source, 2, start=2)
    again = auto_retrain.tick(stack.engine, policy, publish)
    assert again.queue and again.job_id != queued.job_id
    assert supervision.get_snapshot(stack.engine, again.snapshot_id).n_examples == 4
    assert [r.job_id for r in published] == [queued.job_id, again.job_id]

    # The minimum interval holds the next one back even when enough is new.
    _finish(stack, again.job_id, passed=True)
    _approve(stack, source, 2, start=4)
    spaced = replace(policy, min_interval_s=3600)
    assert auto_retrain.tick(stack.engine, spaced, publish).code == "too_soon"
    later = datetime.now(UTC) + timedelta(hours=2)
    assert auto_retrain.tick(stack.engine, spaced, publish, now=later).code == "threshold"

    # The console: both jobs, queued automatically with the reason; refused and promoted.
    client = TestClient(create_app(get_settings(), ConsoleSettings()), follow_redirects=False)
    token = csrf_of(client.get("/login").text)
    assert client.post("/login", data={"credential": key_for(VIEWER),
                                       "csrf": token}).status_code == 303
    listing = client.get("/adapters").text
    for job_id in (queued.job_id, again.job_id):
        assert f'data-job="{job_id}"' in listing
    assert "reached the threshold of 2" in listing
    refused = client.get(f"/adapters/jobs/{queued.job_id}")
    assert refused.status_code == 200
    assert 'id="outcome">refused' in refused.text and "f1 worse by 0.3" in refused.text
    assert "queued by the retraining policy" in refused.text
    promoted = client.get(f"/adapters/jobs/{again.job_id}").text
    assert 'id="outcome">promoted' in promoted
    assert client.get("/adapters/jobs/no-such-job").status_code == 404
