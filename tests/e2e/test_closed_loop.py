"""The closed improvement loop, end to end on the real stack (issue 17, item 3): a question
answered through the gateway, a user's negative feedback with a correction, the candidate
example approved by an SME in the web console, the finetune worker's retraining policy queueing
a job by itself (threshold N=1), the job trained, gated against the served version through the
real query path and promoted, every step on finetune.events and in the console, and the next
answer served by the new version.

Kept small to stay fast: a two-step LoRA, two gate questions with short answers. The gate's
tolerances are loose enough for a two-step adapter, so promotion is what it decides (the gate
is the real one, its decisions both ways are unit-tested, and it still fails on any error
reply); a refusal would be recorded and shown the same way (see
``tests/integration/finetune/test_auto_retrain.py``).
"""

from __future__ import annotations

import json
import time
import uuid

import httpx
import pytest

from services.common.events import Principal
from services.finetune import auto_retrain, registry
from tests.support.console_client import console_as, csrf_of
from tests.support.corpus import indexed_corpus
from tests.support.documents import unique_prefix
from tests.support.feedback import candidate_of, correct
from tests.support.finetune import LOOSE_TOLERANCES, TERMINAL, job_events, two_question_gate
from tests.support.keys import bearer
from tests.support.stack import Workers, wait_for

pytestmark = pytest.mark.e2e
ASKER = Principal(id="lena-loop", groups=["employees"], clearance="internal")
SME = Principal(id="sven-sme", groups=["employees", "smes"], clearance="internal")
QUESTION = "Which plants does the Lisbon office grow on its roof?"
CORRECTION = "Tomatoes, basil and lemon trees grow in the Lisbon rooftop garden [1]."
TINY = {"max_steps": 2, "batch_size": 1, "max_seq_len": 96, "lora_r": 4, "lora_alpha": 8,
        "target_modules": ["q_proj", "v_proj"]}


@pytest.fixture(scope="module")
def facts(stack, workers):
    prefix = unique_prefix("loop")
    indexed_corpus(stack, prefix)
    return prefix


def _ask(gateway_url: str, prefix: str, model: str = "customllm") -> dict:
    answer = httpx.post(f"{gateway_url}/v1/chat/completions", headers=bearer(ASKER),
                        timeout=300, json={"model": model, "max_tokens": 12,
                                           "messages": [{"role": "user", "content": QUESTION}],
                                           "filters": {"doc_id_prefix": prefix}})
    assert answer.status_code == 200, answer.text
    return answer.json()["customllm"]


def _policy_env(adapter: str, prefix: str, testset: str) -> dict[str, str]:
    return {
        "CUSTOMLLM_OTEL_EXPORTER": "none",
        "CUSTOMLLM_FINETUNE_POLL_S": "0.5", "CUSTOMLLM_FINETUNE_PROGRESS_EVERY_S": "0.5",
        "CUSTOMLLM_FINETUNE_AUTO_ENABLED": "1",
        "CUSTOMLLM_FINETUNE_AUTO_ADAPTER": adapter,
        "CUSTOMLLM_FINETUNE_AUTO_MIN_NEW_EXAMPLES": "1",
        "CUSTOMLLM_FINETUNE_AUTO_CHECK_EVERY_S": "1",
        "CUSTOMLLM_FINETUNE_AUTO_SOURCES": json.dumps(["feedback"]),
        "CUSTOMLLM_FINETUNE_AUTO_TAGS": json.dumps(["correction"]),
        "CUSTOMLLM_FINETUNE_AUTO_HYPERPARAMETERS": json.dumps(TINY),
        "CUSTOMLLM_FINETUNE_AUTO_TESTSET": testset,
        "CUSTOMLLM_FINETUNE_AUTO_EVALUATION": json.dumps(
            {"tolerances": LOOSE_TOLERANCES, "max_tokens": 8, "doc_id_prefix": prefix,
             "n_boot": 200}),
    }


def test_wrong_answer_feedback_review_automatic_job_gate_promotion_next_answer(
        stack, facts, recorder, gateway_url, tmp_path):
    # 1. A question answered by the base model, and its audit record.
    first = _ask(gateway_url, facts)
    rid = first["request_id"]
    assert first["adapter"] in (None, "answers")  # the served default, not the loop's adapter
    wait_for(lambda: stack.query("SELECT 1 FROM answer_audit WHERE request_id = :r AND answer "
                                 "IS NOT NULL", r=rid), 120, what="the answer's audit record")

    # 2. The asker says it is wrong and what it should have said.
    correct(gateway_url, ASKER, rid, CORRECTION)
    candidate = candidate_of(stack, rid)
    assert candidate.review_status == "pending" and "correction" in candidate.tags

    # 3. An SME approves it in the console's review queue.
    sme = console_as(SME)
    queue = sme.get("/review?source=feedback")
    assert candidate.example_id[:12] in queue.text
    approved = sme.post(f"/review/{candidate.example_id}",  # as htmx posts the row's form
                        headers={"HX-Request": "true"},
                        data={"action": "approve", "seen_status": "pending",
                              "csrf": csrf_of(queue.text)})
    assert approved.status_code == 200 and f"approved by {SME.id}" in approved.text
    assert stack.query("SELECT review_status, reviewer FROM sft_examples WHERE example_id = :e",
                       e=candidate.example_id)[0] == ("approved", SME.id)

    # 4. The worker's retraining policy (N=1) queues a job by itself, which trains, is gated
    #    against the served version (the base: nothing of this name is promoted) and promoted.
    adapter = f"loop{uuid.uuid4().hex[:6]}"
    testset = tmp_path / "gate.jsonl"
    testset.write_text("".join(json.dumps(case) + "\n"
                               for case in two_question_gate(facts).cases))
    worker = Workers(stack, _policy_env(adapter, facts, str(testset)), names=("finetune",))
    worker.start_all()
    try:
        job_id = wait_for(lambda: stack.query(
            "SELECT job_id FROM finetune_jobs WHERE adapter_name = :a", a=adapter), 90,
            what="the automatic job")[0].job_id
        events = job_events(stack.settings.kafka_bootstrap, job_id, TERMINAL, 600)
        statuses = [e.status for e in events]
        assert statuses[0] == "queued" and statuses[-1] == "completed", events[-1]
        for earlier, later in [("queued", "running"), ("running", "evaluating"),
                               ("evaluating", "completed")]:
            assert statuses.index(earlier) < statuses.index(later)
        queued, done = events[0], events[-1]
        assert queued.trigger == "auto" and "by the retraining policy" in queued.message
        assert "reached the threshold of 1" in queued.message
        assert done.promoted is True and done.adapter_version == "v1", done
        assert done.gate["passed"] is True and done.gate["baseline"] == "base"

        snapshot_id = stack.query("SELECT request->'dataset'->>'snapshot_id' AS s FROM "
                                  "finetune_jobs WHERE job_id = :j", j=job_id)[0].s
        assert job_id == auto_retrain.job_id_for(adapter, snapshot_id)
        trained_on = stack.query(
            "SELECT example_id FROM sft_snapshot_examples s JOIN finetune_jobs j ON "
            "s.snapshot_id = j.request->'dataset'->>'snapshot_id' WHERE j.job_id = :j", j=job_id)
        assert candidate.example_id in {r.example_id for r in trained_on}
        version = registry.promoted(stack.engine, adapter)
        assert version is not None and version.ref == f"{adapter}@v1"

        # 5. Each decision in the console: the automatic job, why, the gate, the promotion.
        viewer = console_as(ASKER)
        listing = viewer.get("/adapters").text
        assert f'data-job="{job_id}"' in listing and "reached the threshold of 1" in listing
        page = viewer.get(f"/adapters/jobs/{job_id}").text
        assert 'id="trigger">auto' in page and 'id="outcome">promoted' in page
        assert f"{adapter}@v1 vs base" in page
        card = viewer.get(f"/adapters/{adapter}/v1").text
        assert "queued automatically by the retraining policy" in card
        assert 'id="adapter-status">promoted' in card

        # 6. Nothing new approved since the job's snapshot: no second job.
        time.sleep(3)
        assert len(stack.query("SELECT 1 FROM finetune_jobs WHERE adapter_name = :a",
                               a=adapter)) == 1
    finally:
        worker.stop_all()

    # 7. The next answer is served by the new version, named in the reply.
    second = _ask(gateway_url, facts, model=f"customllm:{adapter}")
    assert (second["adapter"], second["adapter_version"]) == (adapter, "v1"), second
