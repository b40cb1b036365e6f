"""The rag pipeline (services/rag/pipeline.py) on real Postgres with the real encoder and the
real local model, without Kafka: each stage of ``answer`` as the worker runs it.

The worker around it (signatures, dead letters, drafts) is tested in test_app.py and the whole
query path end to end in tests/e2e/test_query_flow.py; here the stages themselves: what a
request resolves to, what is retrieved for whom, when the model is (not) called, and what the
cache keeps.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid

import pytest

from services.common.events import Principal, RagFilters, RagOptions, RagRequest, Screening
from services.common.generation.base import UnknownAdapter
from services.common.generation.local_backend import LocalBackend
from services.common.generation.local_engine import LocalEngine
from services.rag import pipeline
from services.rag.config import rag_settings
from tests.integration.rag.rows import Doc, write_documents

pytestmark = pytest.mark.integration

READER = Principal(id="pipeline-reader", groups=["employees"], clearance="internal")
FACTS = {
    "access": "Production access is granted for sixty days. After that it must be renewed by "
              "the team lead.",
    "incidents": "Regulators must be notified within seventy-two hours of a confirmed breach.",
    "garden": "Tomatoes and lemon trees grow in the rooftop garden of the Lisbon office.",
}


@pytest.fixture(scope="module")
def deps(stack, embedder, tmp_path_factory) -> pipeline.RagDeps:
    engine = LocalEngine.from_settings(stack.settings.model_copy(
        update={"adapters_dir": tmp_path_factory.mktemp("adapters")}))
    engine.load()
    return pipeline.RagDeps(engine=stack.engine, embedder=embedder,
                            backend=LocalBackend(engine), config=rag_settings(),
                            model_id=stack.settings.served_model_id, max_new_tokens=16)


@pytest.fixture(scope="module")
def corpus(stack, embedder) -> str:
    """Three public documents and one restricted, under a prefix of their own."""
    prefix = f"pipe-{uuid.uuid4().hex[:8]}/"
    docs = [Doc(prefix + name, [body], vectors=embedder.encode_passages([body]))
            for name, body in FACTS.items()]
    secret = "The merger code name is BLUE HERON and it closes in March."
    docs.append(Doc(prefix + "merger", [secret], vectors=embedder.encode_passages([secret]),
                    privacy_class="restricted"))
    write_documents(stack.engine, docs)
    return prefix


def _ask(deps, prefix: str, question: str, **options) -> object:
    screening = Screening(policy_version="default@test",
                          question_changed=options.pop("redacted", False))
    request = RagRequest(request_id=f"pipe-{uuid.uuid4().hex[:10]}", question=question,
                         reply_to="rag.replies.tests", principal=options.pop("principal", READER),
                         screening=screening,
                         options=RagOptions(filters=RagFilters(doc_id_prefix=prefix),
                                            **options))
    return asyncio.run(pipeline.answer(request, deps))


def test_an_extractive_answer_is_quoted_from_the_passage_it_cites(deps, corpus):
    reply = _ask(deps, corpus, "How long does production access last before renewal?",
                 use_cache=False)
    assert reply.status == "ok" and "sixty days" in reply.answer
    assert [c.doc_id for c in reply.citations][:1] == [corpus + "access"]
    assert reply.evidence.principal == READER
    assert {"embed", "retrieval", "generation", "total"} <= set(reply.latency_ms)
    assert reply.usage.completion_tokens <= 16 and reply.model == deps.model_id


def test_retrieval_only_never_calls_the_model(deps, corpus):
    reply = _ask(deps, corpus, "Where do the lemon trees grow?", retrieval_only=True)
    assert reply.answer == "" and reply.usage.completion_tokens == 0
    assert "generation" not in reply.latency_ms
    assert reply.citations[0].doc_id == corpus + "garden"


def test_retrieval_only_lists_top_k_whatever_the_prompt_budget(deps, corpus):
    """The token budget bounds a prompt; a retrieval-only reply builds none."""
    tight = dataclasses.replace(deps, config=deps.config.model_copy(
        update={"context_token_budget": 5}))
    reply = _ask(tight, corpus, "Where do the lemon trees grow?", retrieval_only=True, top_k=3)
    assert len(reply.citations) == 3
    assert len({c.doc_id for c in reply.citations}) == 3


def test_top_k_counts_a_paragraph_the_chunker_split_as_one_citation(deps, stack, embedder):
    """Three chunks of one paragraph rank first; asking for two results still gets two
    citations (the paragraph, whole, and the next document), not one."""
    prefix = f"split-{uuid.uuid4().hex[:8]}/"
    parts = ["Lemon trees grow in the rooftop garden of the Lisbon office.",
             "The lemon trees in the rooftop garden are watered every morning.",
             "Lemon trees and the rooftop garden were planted in 2019."]
    other = "The Porto office garden has olive trees and lemon trees on the terrace."
    write_documents(stack.engine, [
        Doc(prefix + "garden", parts, vectors=embedder.encode_passages(parts)),
        Doc(prefix + "porto", [other], vectors=embedder.encode_passages([other])),
        Doc(prefix + "boiler", ["The boiler is serviced in October."],
            vectors=embedder.encode_passages(["The boiler is serviced in October."]))])
    reply = _ask(deps, prefix, "Where do the lemon trees of the rooftop garden grow?",
                 retrieval_only=True, use_cache=False, top_k=2)
    assert [c.doc_id for c in reply.citations] == [prefix + "garden", prefix + "porto"]
    assert reply.citations[0].chunk_ids == [f"{prefix}garden#{i}" for i in range(3)]
    chunked = dataclasses.replace(deps, config=deps.config.model_copy(
        update={"retrieval_unit": "chunk"}))
    raw = _ask(chunked, prefix, "Where do the lemon trees of the rooftop garden grow?",
               retrieval_only=True, use_cache=False, top_k=2)
    assert {c.doc_id for c in raw.citations} == {prefix + "garden"}  # porto crowded out


def test_a_document_above_the_readers_clearance_is_never_evidence(deps, corpus):
    question = "What is the merger code name?"
    public = _ask(deps, corpus, question, retrieval_only=True)
    assert corpus + "merger" not in {c.doc_id for c in public.evidence.retrieved}
    cleared = _ask(deps, corpus, question, retrieval_only=True,
                   principal=Principal(id="pipeline-exec", clearance="restricted"))
    assert cleared.citations[0].doc_id == corpus + "merger"


def test_the_same_question_is_answered_from_the_cache_without_the_model(deps, corpus):
    question = "Within how many hours must regulators be notified?"
    first = _ask(deps, corpus, question)
    second = _ask(deps, corpus, question)
    assert not first.cached and second.cached
    assert second.answer == first.answer and "generation" not in second.latency_ms
    assert [c.chunk_id for c in second.citations] == [c.chunk_id for c in first.citations]


def test_a_redacted_question_is_neither_served_from_nor_kept_in_the_cache(deps, corpus, stack):
    """Redaction makes the questions of different people one text: an answer cached for one
    must not be served for the other."""
    question = "How long does production access last for <EMPLOYEE_ID>?"
    first = _ask(deps, corpus, question, redacted=True)
    second = _ask(deps, corpus, question, redacted=True)
    assert not first.cached and not second.cached and "generation" in second.latency_ms
    assert stack.query("SELECT count(*) FROM answer_cache WHERE question = :q",
                       q=question)[0][0] == 0


def test_a_question_about_nothing_in_the_corpus_gets_dont_know_without_the_model(deps, corpus):
    reply = _ask(deps, corpus, "What is the boiling point of liquid nitrogen in Kelvin?",
                 use_cache=False)
    assert "don't know" in reply.answer.lower() or "do not know" in reply.answer.lower()
    assert reply.usage.completion_tokens == 0 and "generation" not in reply.latency_ms


def test_an_unknown_adapter_is_refused_before_any_work(deps, corpus):
    with pytest.raises(UnknownAdapter):
        _ask(deps, corpus, "How long does production access last?", adapter="no-such-adapter",
             use_cache=False)
