"""Full fine-tuning and continued pretraining on the real Kafka + Postgres: both are jobs on
finetune.requests like LoRA, end as model versions (all weights) in the same registry with
cards, and a promoted model version is served by its name by the local engine.

Training is real (every weight of the served SmolLM2-135M) but tiny: two optimizer steps on
64-token sequences, which is what the 2-core CPU affords in a test.
"""

from __future__ import annotations

import json
import uuid

import pytest
from sqlalchemy import text

from services.common.events import FinetuneDataset, FinetuneRequest
from services.common.producer import flush, make_producer, send
from services.common.topics import FINETUNE_REQUESTS
from services.finetune import jobs, registry
from tests.support.finetune import job_events
from tests.support.stack import Workers

pytestmark = pytest.mark.integration

WORKER_ENV = {
    "CUSTOMLLM_FINETUNE_LEASE_S": "30", "CUSTOMLLM_FINETUNE_POLL_S": "0.5",
    "CUSTOMLLM_FINETUNE_PROGRESS_EVERY_S": "0.5", "CUSTOMLLM_OTEL_EXPORTER": "none",
}
TINY = {"max_steps": 2, "batch_size": 2, "max_seq_len": 64, "save_steps": 1000}
ZERO = "[" + ",".join(["0"] * 383 + ["1"]) + "]"


@pytest.fixture(scope="module")
def finetune_worker(stack):
    running = Workers(stack, WORKER_ENV, names=("finetune",))
    running.start_all()
    yield running
    running.stop_all()


def _adapters_dir(stack):
    return stack.settings.adapters_path


def _submit(stack, request: FinetuneRequest) -> None:
    producer, errors = make_producer(stack.settings.kafka_bootstrap, "tests-finetune"), []
    send(producer, FINETUNE_REQUESTS, request.job_id, request.to_json(), errors=errors)
    flush(producer, errors)


def _knowledge_set(stack, source: str) -> dict[str, str]:
    """Documents of one source with every governance case; returns doc id → expected fate."""
    docs = {  # doc suffix: (privacy, licence, acl, deleted, fate)
        "open": ("public", "CC-BY-4.0", [], False, "in"),
        "own": ("internal", "internal", [], False, "in"),
        "secret": ("confidential", "CC-BY-4.0", [], False, "privacy"),
        "hr": ("internal", "CC-BY-4.0", ["group:hr"], False, "acl"),
        "nc": ("public", "CC-BY-NC-4.0", [], False, "licence"),
        "unknown": ("public", None, [], False, "no licence"),
        "gone": ("public", "CC0", [], True, "deleted"),
    }
    with stack.engine.begin() as conn:
        for suffix, (privacy, license_, acl, deleted, _fate) in docs.items():
            doc_id = f"{source}-{suffix}"
            conn.execute(text(
                "INSERT INTO documents (doc_id, version, title, source, license, privacy_class, "
                "acl, deleted, chunk_count) VALUES (:d, 1, :d, :s, :l, :p, :a, :x, 2)"),
                {"d": doc_id, "s": source, "l": license_, "p": privacy, "a": acl,
                 "x": deleted})
            for ordinal in range(2):
                body = (f"The {suffix} archive of {source}, part {ordinal}: the Zorblax "
                        f"reactor is inspected in March and September by the {suffix} team.")
                conn.execute(text(
                    "INSERT INTO chunks (chunk_id, doc_id, ordinal, content_hash, text, "
                    "word_count, model_id, embedding) VALUES (:c, :d, :o, :h, :t, :w, "
                    "(SELECT model_id FROM index_models WHERE state = 'active'), "
                    "CAST(:e AS vector))"),
                    {"c": f"{doc_id}#{ordinal}", "d": doc_id, "o": ordinal,
                     "h": uuid.uuid4().hex, "t": body, "w": len(body.split()), "e": ZERO})
    return {f"{source}-{k}": v[-1] for k, v in docs.items()}


def _snapshot(stack) -> str:
    from services.finetune import supervision
    from services.finetune.examples import ChatExample

    tag = uuid.uuid4().hex[:8]  # examples are unique by content across the session
    source = f"tests-full-{tag}"
    for n in range(4):
        assert supervision.add_example(stack.engine, ChatExample(messages=[
            {"role": "user", "content": f"Which shelf holds crate {tag}-{n}?"},
            {"role": "assistant", "content": f"Crate {tag}-{n} is on shelf {n + 3} [1]."}]),
            source=source, approved_by="tests", privacy_class="public")
    return supervision.create_snapshot(stack.engine, sources=[source]).snapshot_id


def _completed(stack, job_id: str) -> list:
    events = job_events(stack.settings.kafka_bootstrap, job_id, {"completed", "failed"}, 600)
    assert events[-1].status == "completed", events[-1]
    statuses = [e.status for e in events]
    assert statuses.index("queued") < statuses.index("running") < \
        statuses.index("evaluating") < statuses.index("completed")
    progress = [e.progress for e in events if e.progress]
    assert progress and progress[-1]["step"] == 2 and progress[-1]["loss"] > 0
    return events


def test_continued_pretraining_trains_only_on_what_the_policy_allows(stack, finetune_worker):
    source = f"kb-{uuid.uuid4().hex[:8]}"
    fates = _knowledge_set(stack, source)
    name = f"kb{uuid.uuid4().hex[:6]}"
    request = FinetuneRequest(job_id=f"ft-cpt-{uuid.uuid4().hex[:8]}", adapter_name=name,
                              method="continued_pretraining",
                              dataset=FinetuneDataset(sources=[source]),
                              hyperparameters=TINY, promote="never")
    _submit(stack, request)
    events = _completed(stack, request.job_id)
    assert events[-1].adapter_version == "v1" and events[-1].promoted is False

    version = registry.get(stack.engine, name, 1)
    assert version is not None and (version.kind, version.method, version.status) == (
        "model", "continued_pretraining", "candidate")
    assert version.snapshot_id.startswith("cpt-")
    assert version.card_markdown.startswith(f"# Model `{name}@v1`")
    card = version.card_markdown
    assert "privacy class at most `internal`" in card
    assert "| privacy class confidential above internal | 1 | 2 |" in card
    assert "| ACL-restricted (a model answers everyone) | 1 | 2 |" in card
    assert "| licence CC-BY-NC-4.0 not trainable | 1 | 2 |" in card
    assert "| no licence recorded | 1 | 2 |" in card
    assert "| deleted | 1 | 2 |" in card

    # What it trained on is exactly the allowed documents' chunks, frozen for a resume.
    job = jobs.get_job(stack.engine, request.job_id)
    frozen = json.loads((stack.state / "finetune" / request.job_id / "corpus.json").read_text())
    trained_docs = {chunk.split("#")[0] for chunk in frozen["chunk_ids"]}
    assert trained_docs == {doc for doc, fate in fates.items() if fate == "in"}
    assert job.result["corpus"]["included"]["chunks"] == 4
    assert job.result["corpus"]["excluded"]["documents"] == 5

    folder = _adapters_dir(stack) / f"{name}@v1"
    assert (folder / "model.safetensors").is_file() and (folder / "config.json").is_file()
    assert json.loads((folder / "customllm-adapter.json").read_text())["kind"] == "model"
    # The work copy and the checkpoints are gone: the registry keeps the only copy.
    assert not (stack.state / "finetune" / request.job_id / "model").exists()
    assert not (stack.state / "finetune" / request.job_id / "checkpoints").exists()


def test_a_policy_that_allows_nothing_fails_the_job_with_the_reason(stack, finetune_worker):
    source = f"kb-{uuid.uuid4().hex[:8]}"
    _knowledge_set(stack, source)
    request = FinetuneRequest(job_id=f"ft-cpt-{uuid.uuid4().hex[:8]}", adapter_name="kbnone",
                              method="continued_pretraining",
                              dataset=FinetuneDataset(sources=[source], licenses=["MIT"]),
                              hyperparameters=TINY, promote="never")
    _submit(stack, request)
    events = job_events(stack.settings.kafka_bootstrap, request.job_id,
                        {"completed", "failed"}, 300)
    assert events[-1].status == "failed"
    assert "no chunk may be trained on" in events[-1].error
    assert "licence CC-BY-4.0 not trainable" in events[-1].error


def test_a_full_fine_tune_is_a_model_version_served_by_name(stack, finetune_worker):
    name = f"full{uuid.uuid4().hex[:6]}"
    request = FinetuneRequest(job_id=f"ft-full-{uuid.uuid4().hex[:8]}", adapter_name=name,
                              method="full", dataset=FinetuneDataset(snapshot_id=_snapshot(stack)),
                              hyperparameters=TINY, promote="never")
    _submit(stack, request)
    events = _completed(stack, request.job_id)
    assert events[-1].adapter_version == "v1"
    assert "stays a candidate" in events[-1].gate["reason"]
    version = registry.get(stack.engine, name, 1)
    assert (version.kind, version.method) == ("model", "full")
    assert version.hyperparameters["learning_rate"] == 5e-5  # the full-fine-tuning default
    assert "full fine-tuning" in version.card_markdown
    assert f"vllm serve {version.path} --served-model-name {name}" in version.card_markdown

    # Promotion links the name to the version; the local engine then serves the full weights
    # by that name, and the reply's version is the registry's.
    from services.common.generation.engine_types import SamplingParams
    from services.common.generation.local_engine import LocalEngine

    registry.promote(stack.engine, name, 1, _adapters_dir(stack))
    engine = LocalEngine.from_settings(stack.settings)
    resolved = engine.adapters.resolve(name)
    assert (resolved.kind, resolved.label) == ("model", "v1")
    assert name in engine.available_adapters()
    params = SamplingParams(max_new_tokens=6)
    messages = [{"role": "user", "content": "Which shelf holds box 2?"}]
    tuned = engine.generate_chat(messages, params, name)
    assert tuned.completion_tokens > 0
    model = engine._models[next(iter(engine._models))]  # noqa: SLF001 - which weights answered
    assert model is not engine.load_info.model
    base = engine.load_info.model.state_dict()
    changed = [k for k, v in model.state_dict().items() if not v.equal(base[k])]
    assert len(changed) > 50  # every layer moved, not an adapter's few matrices
