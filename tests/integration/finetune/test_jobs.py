"""The finetune worker on the real Kafka + Postgres: a job delivered twice trains once, a
worker killed with SIGKILL mid-training leaves the job to be resumed by the next worker, and a
cancel stops a running job at its next step.

Training is real (LoRA on the served SmolLM2) but tiny: a handful of examples, a few steps,
short sequences. A job may start from a registered adapter (the real shipped one here): it keeps
that adapter's shape, weights and compact prompt, records the exact version, or fails with the
reason.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest
from safetensors.numpy import load_file

from services.common.events import FinetuneDataset, FinetuneEvent, FinetuneRequest
from services.common.producer import flush, make_producer, send
from services.common.topics import FINETUNE_REQUESTS
from services.finetune import jobs, registry
from tests.support.finetune import job_events
from tests.support.stack import Workers, wait_for

pytestmark = pytest.mark.integration

WORKER_ENV = {
    "CUSTOMLLM_FINETUNE_LEASE_S": "6", "CUSTOMLLM_FINETUNE_POLL_S": "0.5",
    "CUSTOMLLM_FINETUNE_PROGRESS_EVERY_S": "0.5", "CUSTOMLLM_OTEL_EXPORTER": "none",
}
WEIGHTS = "adapter_model.safetensors"
TINY = {"max_steps": 2, "batch_size": 2, "max_seq_len": 64, "lora_r": 4, "lora_alpha": 8,
        "save_steps": 1, "target_modules": ["q_proj", "v_proj"]}


@pytest.fixture(scope="module")
def finetune_worker(stack):
    running = Workers(stack, WORKER_ENV, names=("finetune",))
    running.start_all()
    yield running
    running.stop_all()


@pytest.fixture(scope="module")
def snapshot_id(stack) -> str:
    from services.finetune import supervision
    from services.finetune.examples import ChatExample

    source = f"tests-ft-{uuid.uuid4().hex[:8]}"
    for n in range(4):
        supervision.add_example(stack.engine, ChatExample(messages=[
            {"role": "user", "content": f"Which shelf holds box {n}?"},
            {"role": "assistant", "content": f"Box {n} is on shelf {n + 3} [1]."}]),
            source=source, approved_by="tests", privacy_class="public")
    return supervision.create_snapshot(stack.engine, sources=[source]).snapshot_id


def _submit(stack, request: FinetuneRequest, times: int = 1) -> None:
    producer, errors = make_producer(stack.settings.kafka_bootstrap, "tests-finetune"), []
    for _ in range(times):
        send(producer, FINETUNE_REQUESTS, request.job_id, request.to_json(), errors=errors)
    flush(producer, errors)


def _events(stack, job_id: str, until: set[str], timeout_s: float) -> list[FinetuneEvent]:
    return job_events(stack.settings.kafka_bootstrap, job_id, until, timeout_s)


def _step(stack, job_id: str) -> int:
    job = jobs.get_job(stack.engine, job_id)
    return int((job.progress or {}).get("step", 0)) if job is not None else 0


def _request(snapshot_id: str, **hp) -> FinetuneRequest:
    return FinetuneRequest(job_id=f"ft-{uuid.uuid4().hex[:10]}", adapter_name="shelves",
                           dataset=FinetuneDataset(snapshot_id=snapshot_id),
                           hyperparameters={**TINY, **hp}, promote="never")


def test_a_job_delivered_twice_trains_once(stack, finetune_worker, snapshot_id):
    from typer.testing import CliRunner

    from services.cli.main import app

    request = _request(snapshot_id)
    _submit(stack, request, times=2)
    # A third delivery, as a user would send it: the CLI with the same job id, following the
    # job's events to the end.
    followed = CliRunner().invoke(app, [
        "finetune", "submit", "--adapter", "shelves", "--snapshot", snapshot_id, "--no-promote",
        "--job-id", request.job_id, "--follow", "--timeout", "300",
        *[arg for key, value in TINY.items()
          for arg in ("--set", f"{key}={value}".replace("'", ""))]])
    assert followed.exit_code == 0, followed.output
    assert "completed" in followed.output and "left as candidate" in followed.output
    events = _events(stack, request.job_id, {"completed", "failed"}, 300)
    assert events[-1].status == "completed", events[-1]
    _submit(stack, request)  # a redelivery after it finished changes nothing either
    time.sleep(2)
    statuses = [e.status for e in events]
    assert statuses.count("queued") == 1
    assert [e.message for e in events if e.status == "running" and e.progress is None] == \
        ["started"]
    assert statuses.index("queued") < statuses.index("running") < \
        statuses.index("evaluating") < statuses.index("completed")
    progress = [e.progress for e in events if e.progress]
    assert progress and progress[-1]["step"] == 2 and progress[-1]["loss"] > 0
    job = jobs.get_job(stack.engine, request.job_id)
    assert (job.status, job.attempt) == ("completed", 1)
    versions = [v for v in registry.list_versions(stack.engine, "shelves")
                if v.job_id == request.job_id]
    assert len(versions) == 1 and versions[0].status == "candidate"  # promote: never
    assert events[-1].adapter_version == versions[0].label and events[-1].promoted is False
    assert "stays a candidate" in versions[0].gate["reason"]
    assert "# Adapter `shelves@" in versions[0].card_markdown
    assert stack.query("SELECT count(*) FROM finetune_jobs WHERE job_id = :j",
                       j=request.job_id)[0][0] == 1


def test_an_invalid_request_is_dead_lettered_with_a_failed_event(stack, finetune_worker):
    job_id = f"ft-bad-{uuid.uuid4().hex[:8]}"
    bad = FinetuneRequest(job_id=job_id, adapter_name="shelves",
                          dataset=FinetuneDataset(snapshot_id="x" * 12),
                          hyperparameters={"max_stepz": 2})
    producer, errors = make_producer(stack.settings.kafka_bootstrap, "tests-finetune"), []
    send(producer, FINETUNE_REQUESTS, job_id, bad.model_dump_json().encode(), errors=errors)
    flush(producer, errors)
    (failed,) = _events(stack, job_id, {"failed"}, 60)
    assert "unknown hyperparameters: max_stepz" in failed.error
    dead = stack.read_topic("finetune.requests.dlq", lambda k, _v: k == job_id.encode(), 1, 30)
    assert len(dead) == 1 and jobs.get_job(stack.engine, job_id) is None


def test_qlora_without_a_gpu_fails_with_the_reason(stack, finetune_worker, snapshot_id):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: QLoRA would run")
    request = _request(snapshot_id).model_copy(update={"method": "qlora"})
    _submit(stack, request)
    events = _events(stack, request.job_id, {"completed", "failed"}, 120)
    assert events[-1].status == "failed" and "QLoRAUnavailable" in events[-1].error
    job = jobs.get_job(stack.engine, request.job_id)
    assert job.status == "failed" and "QLoRAUnavailable" in job.error


def test_cancel_stops_a_running_job(stack, finetune_worker, snapshot_id):
    request = _request(snapshot_id, max_steps=400, save_steps=1000)
    _submit(stack, request)
    _events(stack, request.job_id, {"running"}, 120)
    wait_for(lambda: _step(stack, request.job_id), 180, what="training to make progress")
    _submit(stack, FinetuneRequest(action="cancel", job_id=request.job_id, reason="tests"))
    events = _events(stack, request.job_id, {"cancelled", "completed", "failed"}, 120)
    assert events[-1].status == "cancelled", events[-1]
    job = jobs.get_job(stack.engine, request.job_id)
    assert job.status == "cancelled" and job.progress["step"] < 400
    assert not [v for v in registry.list_versions(stack.engine, "shelves")
                if v.job_id == request.job_id]


def test_a_worker_killed_mid_training_is_resumed_by_the_next(stack, finetune_worker,
                                                              snapshot_id):
    request = _request(snapshot_id, max_steps=10, save_steps=2, batch_size=1)
    _submit(stack, request)
    wait_for(lambda: _step(stack, request.job_id) >= 3, 240, interval_s=0.5,
             what="training to pass step 3")
    finetune_worker.kill9("finetune")
    killed_at = jobs.get_job(stack.engine, request.job_id)
    assert killed_at.status == "running" and killed_at.attempt == 1

    finetune_worker.start("finetune")
    events = _events(stack, request.job_id, {"completed", "failed"}, 420)
    assert events[-1].status == "completed", events[-1]
    resumed = [e for e in events if e.status == "running" and e.attempt == 2 and e.message]
    assert resumed and "stopped heartbeating" in resumed[0].message
    job = jobs.get_job(stack.engine, request.job_id)
    assert job.attempt == 2 and job.worker_id != killed_at.worker_id
    training = job.result["training"]
    assert training["resumed_from_step"] >= 2 and training["steps"] == 10


# --- starting from a registered adapter (init_adapter / finetune submit --from) ---------------

@pytest.fixture(scope="module")
def start_adapter(stack) -> str:
    """The real shipped answers adapter, registered under a name of this module's own."""
    from services.common.generation import answer_adapter

    name = f"answers{uuid.uuid4().hex[:6]}"
    adapters_dir = stack.settings.adapters_path
    outcome = answer_adapter.install(stack.engine, adapters_dir, name,
                                     stack.settings.local_model_id)
    assert name in outcome, outcome
    return name


@pytest.fixture(scope="module")
def answer_snapshot(stack) -> str:
    """Examples in the default template's layout, with cited spans and one "don't know"."""
    from services.common.prompting.context_item import ContextItem
    from services.common.prompting.prompts import load_template, render
    from services.finetune import supervision
    from services.finetune.examples import ChatExample

    template, tag = load_template("default"), uuid.uuid4().hex[:8]
    source = f"tests-answers-{tag}"
    for n, colour in enumerate(("red", "green", "blue", "yellow")):
        items = [ContextItem(1, ("a",), "store", "Stores", "docs://stores",
                             f"Box {tag}-{n} is kept in the {colour} cupboard, on shelf {n + 3}"
                             " of the north store.", 1.0),
                 ContextItem(2, ("b",), "rota", "Rota", "docs://rota",
                             "The north store opens at eight and closes at six.", 1.0)]
        # "shelf 4" is " shelf", " ", "4" for SmolLM2's tokenizer: a span with a space inside
        where = f"{colour} cupboard [1]." if n % 2 else f"shelf {n + 3} [1]."
        for question, answer in ((f"Where is box {tag}-{n} kept?", where),
                                 (f"Who painted box {tag}-{n}?", template.no_answer)):
            supervision.add_example(stack.engine, ChatExample(messages=[
                *render(template, question, items),
                {"role": "assistant", "content": answer}]),
                source=source, approved_by="tests", privacy_class="public")
    return supervision.create_snapshot(stack.engine, sources=[source]).snapshot_id


def _warm_job(stack, snapshot_id: str, name: str, **hp) -> FinetuneEvent:
    """A job without TINY's LoRA shape: the starting adapter brings its own."""
    request = FinetuneRequest(job_id=f"ft-{uuid.uuid4().hex[:10]}", adapter_name=name,
                              dataset=FinetuneDataset(snapshot_id=snapshot_id),
                              hyperparameters={"max_steps": 2, "batch_size": 2,
                                               "max_seq_len": 64, **hp}, promote="never")
    _submit(stack, request)
    return _events(stack, request.job_id, {"completed", "failed"}, 600)[-1]


def _relative_change(new: dict, old: dict) -> float:
    import numpy as np

    moved = sum(float(np.square(new[k] - old[k]).sum()) for k in old)
    return (moved / sum(float(np.square(v).sum()) for v in old.values())) ** 0.5


def test_a_job_from_the_answer_adapter_keeps_its_shape_weights_and_prompt(
        stack, finetune_worker, answer_snapshot, start_adapter):
    from services.common.generation.evidence_prompt import PROMPT_VERSION

    name = f"acme{uuid.uuid4().hex[:6]}"
    last = _warm_job(stack, answer_snapshot, name, init_adapter=start_adapter)
    assert last.status == "completed", last

    start = registry.get(stack.engine, start_adapter)
    version = registry.get(stack.engine, name, 1)
    assert start is not None and version is not None
    assert version.hyperparameters["init_adapter"] == start.ref  # exact, though named bare
    assert version.hyperparameters["lora_top_layers"] == 16
    assert version.hyperparameters["lora_r"] == 16
    config = json.loads((Path(version.path) / "adapter_config.json").read_text())
    assert config["layers_to_transform"] == list(range(14, 30)) and config["r"] == 16

    shipped = load_file(str(Path(start.path) / WEIGHTS))
    trained = load_file(str(Path(version.path) / WEIGHTS))
    assert set(trained) == set(shipped)
    # Two steps move the shipped weights a little; fresh LoRA weights (B = 0) would be all
    # the way from them.
    assert 0 < _relative_change(trained, shipped) < 0.2

    # Taught on the compact prompt the answer adapter learnt, and served on it (its card).
    card = json.loads((Path(version.path) / "datacard.json").read_text())
    assert card["prompt_version"] == PROMPT_VERSION
    assert card["examples"]["answerable"] == 4 and card["examples"]["unanswerable"] == 4
    assert "on its compact prompt: 4 cited answers and 4" in version.card_markdown


def test_a_start_that_cannot_be_honoured_fails_the_job_with_the_reason(
        stack, finetune_worker, snapshot_id, start_adapter):
    unknown = _warm_job(stack, snapshot_id, f"acme{uuid.uuid4().hex[:6]}",
                        init_adapter="nosuchadapter")
    assert unknown.status == "failed"
    assert "no such registered adapter" in unknown.error and start_adapter in unknown.error

    reshaped = _warm_job(stack, snapshot_id, f"acme{uuid.uuid4().hex[:6]}",
                         init_adapter=start_adapter, lora_r=8)
    assert reshaped.status == "failed"
    assert "fixes the LoRA shape" in reshaped.error and "lora_r=16" in reshaped.error

    # This module's examples are plain conversations: the compact prompt cannot be taught.
    unreadable = _warm_job(stack, snapshot_id, f"acme{uuid.uuid4().hex[:6]}",
                           init_adapter=start_adapter)
    assert unreadable.status == "failed"
    assert "can be taught in it" in unreadable.error and "not_in_layout" in unreadable.error
