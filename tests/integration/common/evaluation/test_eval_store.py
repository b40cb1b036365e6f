"""Evaluation runs and results in real Postgres: round trips, idempotent upserts, the ids a
resume skips, and migration 0004 going down and up."""

import math
import uuid

import numpy as np
import pytest
from alembic import command

from services.common import migrate
from services.common.evaluation import store
from services.common.evaluation.models import CaseResult, CaseUsage

pytestmark = pytest.mark.integration


def _run_id() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


def _result(run_id: str, case_id: str, **extra) -> CaseResult:
    fields = {"run_id": run_id, "case_id": case_id, "question": f"question {case_id}?",
              "expected": "answer", "tags": ["answerable"], "answers": ["forty-two"],
              "gold_doc_ids": ["d1"], "answer": "It is forty-two [1].",
              "cited_doc_ids": ["d1"], "retrieved_doc_ids": ["d1", "d2"],
              "contexts": ["The answer is forty-two."], "latency_ms": {"total": 12.5},
              "usage": CaseUsage(prompt_tokens=10, completion_tokens=3, cost_usd=0.001)}
    fields.update(extra)
    return CaseResult(**fields)


def test_run_round_trip(stack):
    run_id = _run_id()
    config = {"testset": "t.jsonl", "domain": "default", "seeds": {"bootstrap": 0},
              "principal": {"id": "eval", "groups": [], "clearance": "restricted"}}
    created = store.create_run(stack.engine, run_id, "t.jsonl", "ab" * 32, config, 3)
    assert (created.run_id, created.status, created.cases_total, created.cases_done) == (
        run_id, "running", 3, 0)
    assert created.config == config and created.summary is None and created.finished_at is None
    with pytest.raises(store.EvalStoreError, match="exists already"):
        store.create_run(stack.engine, run_id, "t.jsonl", "ab" * 32, config, 3)

    store.update_config(stack.engine, run_id, {"template_version": "default/v1",
                                               "model": np.str_("m")})
    assert store.get_run(stack.engine, run_id).config == {
        **config, "template_version": "default/v1", "model": "m"}

    summary = {"metrics": {"f1": {"mean": np.float64(0.5), "lo": float("nan"), "hi": 1.0,
                                  "n": np.int64(2)}}}
    store.finish_run(stack.engine, run_id, summary)
    run = store.get_run(stack.engine, run_id)
    assert run.status == "completed" and run.finished_at is not None
    assert run.summary == {"metrics": {"f1": {"mean": 0.5, "lo": None, "hi": 1.0, "n": 2}}}
    assert run_id in [r.run_id for r in store.list_runs(stack.engine)]
    assert store.get_run(stack.engine, _run_id()) is None
    with pytest.raises(store.EvalStoreError, match="no evaluation run"):
        store.finish_run(stack.engine, _run_id(), {})
    with pytest.raises(store.EvalStoreError, match="no evaluation run"):
        store.require_run(stack.engine, _run_id())


def test_record_result_is_an_idempotent_upsert(stack):
    run_id = _run_id()
    store.create_run(stack.engine, run_id, "t.jsonl", "cd" * 32, {}, 2)
    first = _result(run_id, "c1")
    metrics = {"f1": 1.0, "faithfulness": None, "rouge_l": float("nan"), "hit@1": np.float64(1)}
    store.record_result(stack.engine, first, metrics)
    store.record_result(stack.engine, first, metrics)  # replayed: still one row
    stored = store.load_results(stack.engine, run_id)
    assert len(stored) == 1
    assert stored[0].result == first
    assert stored[0].metrics == {"f1": 1.0, "faithfulness": None, "rouge_l": None,
                                 "hit@1": 1.0}

    retried = _result(run_id, "c1", answer="Forty-two.", cited_doc_ids=[])
    store.record_result(stack.engine, retried, {"f1": 0.5})
    stored = store.load_results(stack.engine, run_id)
    assert [s.result for s in stored] == [retried]  # replaced, not added
    assert stored[0].metrics == {"f1": 0.5}
    assert store.get_run(stack.engine, run_id).cases_done == 1


def test_completed_ids_for_resume_skip_errors(stack):
    run_id = _run_id()
    store.create_run(stack.engine, run_id, "t.jsonl", "ef" * 32, {}, 4)
    store.record_result(stack.engine, _result(run_id, "ok"), {})
    store.record_result(stack.engine, _result(run_id, "refused", status="refused",
                                              abstained=True), {})
    store.record_result(stack.engine, _result(run_id, "failed", status="error",
                                              error="timeout: no reply"), {})
    assert store.completed_case_ids(stack.engine, run_id) == {"ok", "refused"}
    assert store.completed_case_ids(stack.engine, run_id, include_errors=True) == {
        "ok", "refused", "failed"}
    run = store.get_run(stack.engine, run_id)
    assert (run.cases_done, run.cases_failed) == (3, 1)
    other = _run_id()
    store.create_run(stack.engine, other, "t.jsonl", "ef" * 32, {}, 4)
    assert store.completed_case_ids(stack.engine, other) == set()  # per run

    store.mark_running(stack.engine, run_id, 5)
    assert store.get_run(stack.engine, run_id).cases_total == 5


def test_result_of_an_unknown_run_is_rejected(stack):
    with pytest.raises(Exception, match="eval_results_run_id_fkey|foreign key"):
        store.record_result(stack.engine, _result(_run_id(), "c1"), {})


def test_jsonable_is_strict():
    assert store.jsonable({"a": float("inf"), "b": (1, np.int32(2)), "c": np.array([0.5])}) == {
        "a": None, "b": [1, 2], "c": [0.5]}
    assert not any(isinstance(v, float) and math.isnan(v)
                   for v in store.jsonable([float("nan")]) if v is not None)


def test_migration_0004_downgrades_and_upgrades(stack):
    url = stack.settings.sqlalchemy_url

    def tables() -> set[str]:
        return {r[0] for r in stack.query(
            "SELECT tablename FROM pg_tables WHERE tablename LIKE 'eval_%'")}

    assert tables() == {"eval_runs", "eval_results"}
    try:
        command.downgrade(migrate.alembic_config(url), "0003")
        assert migrate.current_revision(url) == "0003"
        assert tables() == set()
    finally:
        migrate.upgrade(url)
    assert tables() == {"eval_runs", "eval_results"}
