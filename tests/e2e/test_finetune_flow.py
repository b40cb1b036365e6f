"""Fine-tuning end to end on the real stack: a job submitted on finetune.requests trains a LoRA
adapter on a supervision snapshot, the evaluation gate compares it with the base model through
the real query path, the registry promotes it, and a question asked with the adapter's name is
answered by that version, which the reply and the trace both name.

Kept small to stay fast: four examples, two training steps, two evaluation questions, short
answers. The gate's tolerances are loose enough for a two-step adapter, but the gate is the
real one (its decisions both ways are unit-tested) and still fails on any error reply.
"""

from __future__ import annotations

import uuid

import pytest

from services.common.events import FinetuneDataset, FinetuneEvent, FinetuneRequest
from services.finetune import jobs, registry
from tests.support.corpus import indexed_corpus
from tests.support.documents import unique_prefix
from tests.support.finetune import (
    TERMINAL,
    ask_reactor,
    four_example_snapshot,
    job_events,
    submit,
    two_question_gate,
)
from tests.support.stack import Workers, wait_for

pytestmark = pytest.mark.e2e

@pytest.fixture(scope="module")
def finetune_worker(stack, query_workers, otlp_receiver):
    running = Workers(stack, {"CUSTOMLLM_OTEL_EXPORTER": "otlp",
                              "CUSTOMLLM_OTEL_ENDPOINT": otlp_receiver.endpoint,
                              "CUSTOMLLM_FINETUNE_POLL_S": "0.5",
                              "CUSTOMLLM_FINETUNE_PROGRESS_EVERY_S": "0.5"},
                      names=("finetune",))
    running.start_all()
    yield running
    running.stop_all()


def _follow(stack, job_id: str, timeout_s: float) -> list[FinetuneEvent]:
    return job_events(stack.settings.kafka_bootstrap, job_id, TERMINAL, timeout_s)


def test_submit_train_gate_promote_and_answer_with_the_adapter(
        stack, finetune_worker, reply_client, otlp_receiver):
    prefix = unique_prefix("ft")
    indexed_corpus(stack, prefix)
    name = f"cite{uuid.uuid4().hex[:6]}"
    request = FinetuneRequest(
        job_id=f"ft-e2e-{uuid.uuid4().hex[:8]}", adapter_name=name,
        dataset=FinetuneDataset(snapshot_id=four_example_snapshot(stack.engine,
                                                                  f"tests-e2e-{prefix}")),
        hyperparameters={"max_steps": 2, "batch_size": 2, "max_seq_len": 96, "lora_r": 4,
                         "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]},
        evaluation=two_question_gate(prefix))
    submit(stack.settings.kafka_bootstrap, request)

    events = _follow(stack, request.job_id, 600)
    statuses = [e.status for e in events]
    assert statuses[-1] == "completed", events[-1]
    for earlier, later in [("queued", "running"), ("running", "evaluating"),
                           ("evaluating", "completed")]:
        assert statuses.index(earlier) < statuses.index(later)
    assert any(e.progress and e.progress.get("loss") for e in events)
    done = events[-1]
    assert done.promoted is True and done.adapter_version == "v1", done
    assert done.gate["passed"] is True and done.gate["baseline"] == "base"

    version = registry.promoted(stack.engine, name)
    assert version is not None and version.ref == f"{name}@v1"
    assert version.gate["candidate_run"] and version.gate["baseline_run"]
    assert "error" in version.gate["checked"]
    assert "Gate **passed**" in version.card_markdown
    assert f"--lora-modules {name}=" in version.card_markdown
    runs = stack.query("SELECT config->>'adapter' FROM eval_runs WHERE run_id = ANY(:ids) "
                       "ORDER BY started_at", ids=[version.gate["baseline_run"],
                                                   version.gate["candidate_run"]])
    assert [r[0] for r in runs] == [None, f"{name}@v1"]  # base, then the candidate itself
    assert jobs.get_job(stack.engine, request.job_id).mlflow_run_id == version.mlflow_run_id

    # Served by name, no restart: the rag worker has been running all along.
    reply = ask_reactor(reply_client, prefix, adapter=name)
    assert reply.status == "ok", reply.error
    assert (reply.adapter, reply.adapter_version) == (name, "v1")

    spans = wait_for(
        lambda: [s for s in otlp_receiver.trace(reply.trace_id) if s.name == "rag.generation"],
        60, what="the generation span of the adapter's answer")
    assert spans[0].attributes["gen_ai.request.adapter"] == name
    assert spans[0].attributes["gen_ai.request.adapter_version"] == "v1"

    # A version by its exact name answers while promoted; once retired it answers no one.
    def ask_version() -> object:
        return ask_reactor(reply_client, prefix, adapter=f"{name}@v1", max_tokens=4)

    assert ask_version().status == "ok"
    registry.retire(stack.engine, name, 1,
                    stack.settings.adapters_path)
    refused = ask_version()
    assert refused.status == "error" and refused.error_code == "forbidden", refused
    assert "retired" in refused.error
