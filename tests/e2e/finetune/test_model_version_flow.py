"""A full fine-tune end to end on the real stack: submitted on finetune.requests, every weight of
the served SmolLM2 trained on a supervision snapshot, registered as a model version, judged by
the same evaluation gate against the base through the real query path, promoted, and then
serving questions asked by its name, which the reply names with its version.

Kept as small as the LoRA flow (tests/e2e/test_finetune_flow.py): four examples, two steps,
two evaluation questions, loose tolerances (the gate is the real one and still fails on any
error reply).
"""

from __future__ import annotations

import uuid

import pytest

from services.common.events import FinetuneDataset, FinetuneRequest
from services.finetune import registry
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
from tests.support.stack import Workers

pytestmark = pytest.mark.e2e

@pytest.fixture(scope="module")
def finetune_worker(stack, query_workers):
    running = Workers(stack, {"CUSTOMLLM_OTEL_EXPORTER": "none",
                              "CUSTOMLLM_FINETUNE_POLL_S": "0.5",
                              "CUSTOMLLM_FINETUNE_PROGRESS_EVERY_S": "0.5"},
                      names=("finetune",))
    running.start_all()
    yield running
    running.stop_all()


def test_a_full_fine_tune_is_gated_promoted_and_served_by_name(stack, finetune_worker,
                                                                reply_client):
    prefix = unique_prefix("ftfull")
    indexed_corpus(stack, prefix)
    name = f"whole{uuid.uuid4().hex[:6]}"
    request = FinetuneRequest(
        job_id=f"ft-e2e-full-{uuid.uuid4().hex[:8]}", adapter_name=name, method="full",
        dataset=FinetuneDataset(snapshot_id=four_example_snapshot(
            stack.engine, f"tests-e2e-full-{prefix}", question_suffix=f" ({prefix})")),
        hyperparameters={"max_steps": 2, "batch_size": 2, "max_seq_len": 96,
                         "save_steps": 1000},
        evaluation=two_question_gate(prefix))
    submit(stack.settings.kafka_bootstrap, request)

    events = job_events(stack.settings.kafka_bootstrap, request.job_id, TERMINAL, 900)
    done = events[-1]
    assert done.status == "completed", done
    assert done.promoted is True and done.adapter_version == "v1", done
    assert done.gate["passed"] is True and done.gate["baseline"] == "base"

    version = registry.promoted(stack.engine, name)
    assert version is not None and (version.kind, version.method) == ("model", "full")
    assert version.gate["candidate_run"] and version.gate["baseline_run"]
    assert "Gate **passed**" in version.card_markdown
    assert version.card_markdown.startswith(f"# Model `{name}@v1`")
    runs = stack.query("SELECT config->>'adapter' FROM eval_runs WHERE run_id = ANY(:ids) "
                       "ORDER BY started_at", ids=[version.gate["baseline_run"],
                                                   version.gate["candidate_run"]])
    assert [r[0] for r in runs] == [None, f"{name}@v1"]

    # Served by name by the running rag worker (no restart), which names the version.
    reply = ask_reactor(reply_client, prefix, adapter=name)
    assert reply.status == "ok", reply.error
    assert (reply.adapter, reply.adapter_version) == (name, "v1")

    # Only promoted versions serve: once retired, its exact version answers no one.
    registry.retire(stack.engine, name, 1,
                    stack.settings.adapters_path)
    refused = ask_reactor(reply_client, prefix, adapter=f"{name}@v1", max_tokens=4)
    assert refused.status == "error" and "retired" in refused.error, refused
