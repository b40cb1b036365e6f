"""The runner against real Postgres with a scripted reply client: what it sends, what it
stores, errors and timeouts as results, resuming (only what is missing, never another test set
or configuration) and a crash leaving a resumable run."""

import asyncio
import uuid

import pytest

from services.common.evaluation import store
from services.common.evaluation.models import EvalCase
from services.common.evaluation.runner import EvalRunError, run_eval
from services.common.evaluation.runs import build_run_config, load_run
from services.common.events import Citation, RagReply, Usage
from services.common.prompting.prompts import load_template
from services.common.rpc import ReplyTimeout

pytestmark = pytest.mark.integration

NO_ANSWER = load_template("default").no_answer
CASES = [
    EvalCase(id="c1", question="What is the capital of France?", answers=["Paris"],
             gold_doc_ids=["d1"], tags=["answerable"]),
    EvalCase(id="c2", question="Who painted the moon castle?", expected="refuse",
             gold_doc_ids=["d2"], tags=["unanswerable"]),
    EvalCase(id="c3", question="Slow question?", answers=["slow"], gold_doc_ids=["d3"]),
    EvalCase(id="c4", question="Broken question?", answers=["broken"], gold_doc_ids=["d3"]),
]
ANSWERS = {"What is the capital of France?": "Paris [1].",
           "Who painted the moon castle?": NO_ANSWER,
           "Slow question?": "It is slow [2].", "Broken question?": "broken"}


class ScriptedClient:
    """Replies like the rag worker would; ``timeouts``/``errors``/``crash`` break questions."""

    reply_topic = "rag.replies"

    def __init__(self, timeouts=(), errors=(), crash=()):
        self.requests = []
        self.timeouts, self.errors, self.crash = set(timeouts), set(errors), set(crash)

    async def arequest(self, request, timeout_s):
        self.requests.append(request)
        await asyncio.sleep(0)
        question, options = request.question, request.options
        meta = {"template_version": f"{options.domain or 'default'}/v1", "backend": "fake",
                "model": "fake-model"}
        if options.retrieval_only:
            docs = ["d1", "d2", "d1", "d3"] if "France" in question else ["d2", "d3"]
            return RagReply(request_id=request.request_id, answer="", citations=[
                Citation(n=i + 1, chunk_id=f"ch{i}", doc_id=d, text=f"text of {d}")
                for i, d in enumerate(docs)], **meta)
        if question in self.crash:
            raise RuntimeError("the client blew up")
        if question in self.timeouts:
            raise ReplyTimeout(f"no reply to {request.request_id} in {timeout_s:.0f}s")
        if question in self.errors:
            return RagReply(request_id=request.request_id, status="error", answer="",
                            error="backend down", **meta)
        answer = ANSWERS[question]
        cited = [] if answer == NO_ANSWER else [
            Citation(n=1, chunk_id="ch0", doc_id="d1", text="Paris is the capital of France."),
            Citation(n=2, chunk_id="ch1", doc_id="d3", text="It is slow."),
            Citation(n=3, chunk_id="ch2", doc_id="d1", text="again")]
        return RagReply(request_id=request.request_id, answer=answer, citations=cited,
                        usage=Usage(prompt_tokens=100, completion_tokens=5),
                        latency_ms={"retrieval": 3.0, "generation": 40.0, "total": 50.0}, **meta)


def _config(**overrides):
    return build_run_config("cases.jsonl", CASES, **overrides)


def _run(stack, client, config=None, **kwargs):
    return asyncio.run(run_eval(CASES, config or _config(), client, stack.engine,
                                progress=False, n_boot=200, **kwargs))


def test_run_stores_scored_results_and_turns_failures_into_error_results(stack):
    client = ScriptedClient(timeouts={"Slow question?"}, errors={"Broken question?"})
    run_id = _run(stack, client, _config(top_k=3, adapter="legal"), concurrency=2)

    retrieval = [r for r in client.requests if r.options.retrieval_only]
    answering = [r for r in client.requests if not r.options.retrieval_only]
    assert len(retrieval) == len(answering) == 4
    assert all(r.options.top_k == 10 and not r.options.use_cache for r in retrieval)
    assert all(not r.options.use_cache and r.options.temperature == 0.0
               and r.options.top_k == 3 and r.options.adapter == "legal"
               and r.options.domain == "default" for r in answering)
    # Who asks is the client's credential (verified by the input guardrail), never a
    # principal written into the request.
    assert all(r.principal is None for r in client.requests)

    data = load_run(stack.engine, run_id)
    assert data.run.status == "completed" and data.run.cases_done == 4
    results = {r.case_id: r for r in data.results}
    c1 = results["c1"]
    assert (c1.status, c1.answer, c1.abstained) == ("ok", "Paris [1].", False)
    assert c1.retrieved_doc_ids == ["d1", "d2", "d3"]  # ranked, each document once
    assert c1.cited_doc_ids == ["d1", "d3"]  # citation order, each once
    assert c1.contexts[0] == "Paris is the capital of France."
    assert c1.latency_ms["total"] == 50.0 and "roundtrip" in c1.latency_ms
    assert c1.usage.prompt_tokens == 100
    assert results["c2"].abstained and results["c2"].cited_doc_ids == []
    assert results["c3"].status == "error" and results["c3"].error.startswith("timeout")
    assert results["c3"].retrieved_doc_ids == ["d2", "d3"]
    assert (results["c4"].status, results["c4"].error) == ("error", "backend down")

    metrics = data.by_case()
    assert metrics["c1"]["f1"] > 0.5 and metrics["c1"]["hit@1"] == 1.0
    assert metrics["c2"]["abstention_correct"] == 1.0
    assert metrics["c3"]["error"] == 1.0

    config = data.run.config
    assert (config["template_version"], config["backend"], config["model"]) == (
        "default/v1", "fake", "fake-model")
    assert config["temperature"] == 0.0 and config["seeds"] == {"bootstrap": 0,
                                                                "sampling": None}
    assert config["testset_hash"] == data.run.testset_hash and config["cases_total"] == 4
    summary = data.run.summary
    assert data.summary == summary  # recomputed on load: the same figures
    assert list(data.summary["metrics"])[:3] == ["exact_match", "f1", "rouge_l"]  # score order
    assert summary["counts"]["cases"] == 4 and summary["counts"]["errors"] == 2
    assert summary["metrics"]["hit@1"]["n"] == 2  # the two cases that did not error


def test_resume_redoes_only_missing_and_failed_cases(stack):
    run_id = _run(stack, ScriptedClient(timeouts={"Slow question?"}))
    before = {s.result.case_id: s.result for s in store.load_results(stack.engine, run_id)}
    assert before["c3"].status == "error"

    healed = ScriptedClient()
    assert _run(stack, healed, run_id=run_id) == run_id
    assert {r.question for r in healed.requests} == {"Slow question?"}  # only the failed one
    data = load_run(stack.engine, run_id)
    assert data.summary["counts"]["errors"] == 0
    assert {r.case_id: r.status for r in data.results}["c3"] == "ok"

    idle = ScriptedClient()
    _run(stack, idle, run_id=run_id)
    assert idle.requests == []  # everything complete: nothing is asked again
    assert store.get_run(stack.engine, run_id).status == "completed"


def test_resume_refuses_another_test_set_or_configuration(stack):
    run_id = _run(stack, ScriptedClient())
    other_set = build_run_config("cases.jsonl", CASES[:3])
    with pytest.raises(EvalRunError, match="measured test set"):
        _run(stack, ScriptedClient(), other_set, run_id=run_id)
    with pytest.raises(EvalRunError, match="domain: 'default' → 'nocontext'"):
        _run(stack, ScriptedClient(), _config(domain="nocontext"), run_id=run_id)
    subset = ScriptedClient()
    with pytest.raises(EvalRunError, match="cases_hash"):
        asyncio.run(run_eval(CASES[:2], _config(), subset, stack.engine, run_id=run_id,
                             progress=False))
    assert subset.requests == []


def test_a_crash_leaves_a_failed_run_that_resumes(stack):
    run_id = f"crash-{uuid.uuid4().hex[:8]}"
    with pytest.raises(RuntimeError, match="blew up"):
        _run(stack, ScriptedClient(crash={"Slow question?"}), run_id=run_id, concurrency=1)
    run = store.get_run(stack.engine, run_id)
    assert run.status == "failed" and "blew up" in run.summary["error"]
    assert store.completed_case_ids(stack.engine, run_id) == {"c1", "c2"}

    client = ScriptedClient()
    _run(stack, client, run_id=run_id)
    assert {r.question for r in client.requests} == {"Slow question?", "Broken question?"}
    assert store.get_run(stack.engine, run_id).status == "completed"


def test_an_unknown_domain_fails_before_anything_is_stored(stack):
    from services.common.prompting.prompts import TemplateError

    runs_before = len(store.list_runs(stack.engine, 1000))
    with pytest.raises(TemplateError):
        _run(stack, ScriptedClient(), _config(domain="no-such-domain"))
    assert len(store.list_runs(stack.engine, 1000)) == runs_before
