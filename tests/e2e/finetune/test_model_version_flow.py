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

from services.common.events import (
    FinetuneDataset,
    FinetuneEvaluation,
    FinetuneRequest,
    Principal,
    RagFilters,
    RagOptions,
    RagRequest,
)
from services.common.producer import flush, make_producer, send
from services.common.rpc import new_request_id
from services.common.topics import FINETUNE_REQUESTS
from services.finetune import registry
from tests.support.corpus import corpus
from tests.support.documents import unique_prefix
from tests.support.finetune import TERMINAL, job_events
from tests.support.keys import key_for
from tests.support.stack import Workers

pytestmark = pytest.mark.e2e

LOOSE = {"f1": 1.0, "exact_match": 1.0, "hit@5": 1.0, "faithfulness": 1.0,
         "abstention_correct": 1.0, "false_abstention": 1.0, "latency_total_ms": None}


@pytest.fixture(scope="module")
def finetune_worker(stack, query_workers):
    running = Workers(stack, {"CUSTOMLLM_OTEL_EXPORTER": "none",
                              "CUSTOMLLM_FINETUNE_POLL_S": "0.5",
                              "CUSTOMLLM_FINETUNE_PROGRESS_EVERY_S": "0.5"},
                      names=("finetune",))
    running.start_all()
    yield running
    running.stop_all()


def _snapshot(stack, prefix: str) -> str:
    from services.finetune import supervision
    from services.finetune.examples import ChatExample

    source = f"tests-e2e-full-{prefix}"
    pairs = [("Who designed the Zorblax reactor?", "Miriam Okafor designed it [1]."),
             ("When is the reactor inspected?", "In March and in September [1]."),
             ("What grows in the Lisbon rooftop garden?", "Tomatoes, basil and lemon trees [1]."),
             ("When are Quillon salaries paid?", "On the twenty-fifth of each month [1].")]
    for question, answer in pairs:  # examples are unique by content across the session
        supervision.add_example(stack.engine, ChatExample(messages=[
            {"role": "user", "content": f"{question} ({prefix})"},
            {"role": "assistant", "content": answer}]),
            source=source, approved_by="tests", privacy_class="public")
    return supervision.create_snapshot(stack.engine, sources=[source]).snapshot_id


def test_a_full_fine_tune_is_gated_promoted_and_served_by_name(stack, finetune_worker,
                                                                reply_client):
    prefix = unique_prefix("ftfull")
    docs = corpus(prefix)
    stack.publish(docs)
    stack.wait_indexed({d.doc_id: 1 for d in docs})
    name = f"whole{uuid.uuid4().hex[:6]}"
    request = FinetuneRequest(
        job_id=f"ft-e2e-full-{uuid.uuid4().hex[:8]}", adapter_name=name, method="full",
        dataset=FinetuneDataset(snapshot_id=_snapshot(stack, prefix)),
        hyperparameters={"max_steps": 2, "batch_size": 2, "max_seq_len": 96,
                         "save_steps": 1000},
        evaluation=FinetuneEvaluation(
            cases=[{"id": "reactor", "question": "Who designed the Zorblax reactor?",
                    "answers": ["Miriam Okafor"], "gold_doc_ids": [f"{prefix}reactor"]},
                   {"id": "garden", "question": "What grows in the Lisbon rooftop garden?",
                    "answers": ["tomatoes, basil and lemon trees"],
                    "gold_doc_ids": [f"{prefix}garden"]}],
            tolerances=LOOSE, doc_id_prefix=prefix, max_tokens=8, n_boot=200))
    producer, errors = make_producer(stack.settings.kafka_bootstrap, "tests-e2e"), []
    send(producer, FINETUNE_REQUESTS, request.job_id, request.to_json(), errors=errors)
    flush(producer, errors)

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
    reply = reply_client.request(RagRequest(
        request_id=new_request_id(), reply_to="rag.replies.any",
        question="Who designed the Zorblax reactor?",
        credential=key_for(Principal(id="tests", clearance="restricted")),
        options=RagOptions(adapter=name, use_cache=False, max_tokens=8,
                           filters=RagFilters(doc_id_prefix=prefix))), 180)
    assert reply.status == "ok", reply.error
    assert (reply.adapter, reply.adapter_version) == (name, "v1")

    # Only promoted versions serve: once retired, its exact version answers no one.
    registry.retire(stack.engine, name, 1,
                    stack.settings.adapters_dir or stack.state / "adapters")
    refused = reply_client.request(RagRequest(
        request_id=new_request_id(), reply_to="rag.replies.any",
        question="Who designed the Zorblax reactor?",
        credential=key_for(Principal(id="tests", clearance="restricted")),
        options=RagOptions(adapter=f"{name}@v1", use_cache=False, max_tokens=4,
                           filters=RagFilters(doc_id_prefix=prefix))), 180)
    assert refused.status == "error" and "retired" in refused.error, refused
