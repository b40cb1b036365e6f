"""The query path end to end on the real stack and the real local model."""

from __future__ import annotations

import asyncio
import random

import httpx
import openai
import pytest

from services.common.events import Principal, RagFilters, RagOptions, RagRequest
from services.common.rpc import new_request_id
from tests.support.corpus import corpus
from tests.support.documents import unique_prefix
from tests.support.keys import GATEWAY_USER, bearer, key_for
from tests.support.stack import wait_for

pytestmark = pytest.mark.e2e

READER = Principal(id="reader", groups=["employees"], clearance="internal")


@pytest.fixture(scope="module")
def facts(stack, workers):
    prefix = unique_prefix("facts")
    docs = corpus(prefix)
    stack.publish(docs)
    stack.wait_indexed({d.doc_id: 1 for d in docs})
    return prefix


def _ask(client, question: str, principal: Principal = READER, **options) -> object:
    request = RagRequest(request_id=new_request_id(), reply_to="rag.replies.any",
                         question=question, credential=key_for(principal),
                         options=RagOptions(**options))
    return client.request(request, timeout_s=180)


def test_ask_over_kafka_cites_the_document_that_holds_the_answer(facts, reply_client):
    reply = _ask(reply_client, "How is the Zorblax reactor cooled?", filters=RagFilters(
        doc_id_prefix=facts), use_cache=False)
    assert reply.status == "ok", reply.error
    assert reply.answer
    assert reply.citations[0].doc_id == f"{facts}reactor"
    assert reply.citations[0].uri == f"https://wiki.example/{facts}reactor"
    assert reply.template_version == "default/v2"
    assert {"embed", "retrieval", "generation", "total"} <= set(reply.latency_ms)
    assert reply.usage.prompt_tokens > 0 and reply.usage.completion_tokens > 0
    assert reply.trace_id and len(reply.trace_id) == 32


def test_question_outside_the_corpus_gets_dont_know(facts, reply_client):
    reply = _ask(reply_client, "Which pharaoh commissioned the lighthouse of Alexandria?",
                 filters=RagFilters(doc_id_prefix=facts), use_cache=False)
    assert reply.status == "ok"
    assert reply.answer == "I don't know based on the provided documents."
    assert reply.citations == []


def test_same_question_twice_hits_the_cache_and_an_edit_invalidates_it(stack, facts,
                                                                      reply_client):
    question = "When are salaries paid at Quillon Corp?"
    scope = {"filters": RagFilters(doc_id_prefix=facts)}
    first = _ask(reply_client, question, **scope)
    second = _ask(reply_client, question, **scope)
    assert (first.cached, second.cached, second.cache_kind) == (False, True, "exact")
    assert second.answer == first.answer
    near = _ask(reply_client, "When are salaries paid at Quillon Corp ?", **scope)
    assert near.cached and near.cache_kind == "semantic"

    edited = corpus(facts, version=2)
    payroll = next(d for d in edited if d.doc_id.endswith("payroll"))
    changed = payroll.model_copy(update={"content": payroll.content.replace(
        "twenty-fifth", "last working day")})
    stack.publish([changed])
    stack.wait_indexed({changed.doc_id: 2})
    wait_for(lambda: not _ask(reply_client, question, **scope).cached, 30,
             what="the cache entry to be invalidated")
    fresh = _ask(reply_client, question, retrieval_only=True, use_cache=False, **scope)
    assert "last working day" in (fresh.citations[0].text or "")


def test_access_control_never_leaks_restricted_chunks(stack, reply_client):
    prefix = unique_prefix("acl")
    docs = corpus(prefix, garden={"privacy_class": "restricted", "acl": ["facilities"]},
                  payroll={"privacy_class": "confidential", "acl": ["finance"]})
    stack.publish(docs)
    stack.wait_indexed({d.doc_id: 1 for d in docs})
    principals = {
        "guest": (Principal(id="guest", groups=[], clearance="public"), {"reactor"}),
        "fm": (Principal(id="fm", groups=["facilities"], clearance="restricted"),
               {"reactor", "garden"}),
        "fin": (Principal(id="fin", groups=["finance"], clearance="confidential"),
                {"reactor", "payroll"}),
        # In the right group but without the clearance: still sees nothing confidential.
        "spy": (Principal(id="spy", groups=["finance"], clearance="internal"), {"reactor"}),
    }
    questions = ["What grows in the rooftop garden?", "When are bonuses paid?",
                 "Who designed the reactor?", "tomatoes basil lemon", "salaries payroll"]
    rng = random.Random(7)
    seen: dict[str, set[str]] = {name: set() for name in principals}
    for _ in range(24):
        name = rng.choice(sorted(principals))
        principal, allowed = principals[name]
        reply = _ask(reply_client, rng.choice(questions), principal=principal,
                     retrieval_only=True, use_cache=False, top_k=10,
                     filters=RagFilters(doc_id_prefix=prefix))
        cited = {c.doc_id.removeprefix(prefix) for c in reply.citations}
        assert cited <= allowed, (name, cited)
        seen[name] |= cited
    # Not vacuous: principals with clearance do get their restricted documents.
    assert "garden" in seen["fm"] or "payroll" in seen["fin"]


def test_openai_client_against_the_gateway(facts, gateway_url):
    client = openai.OpenAI(base_url=f"{gateway_url}/v1", api_key=key_for(GATEWAY_USER))
    models = client.models.list()
    assert models.data[0].id
    completion = client.chat.completions.create(
        model="customllm", messages=[{"role": "user", "content": "What grows in the garden?"}],
        max_tokens=32, extra_body={"filters": {"doc_id_prefix": facts}})
    assert completion.choices[0].message.content
    citations = completion.model_extra["citations"]
    assert citations[0]["doc_id"] == f"{facts}garden"
    streamed = client.chat.completions.create(
        model="customllm", messages=[{"role": "user", "content": "What grows in the garden?"}],
        max_tokens=32, stream=True, extra_body={"filters": {"doc_id_prefix": facts}})
    text = "".join(chunk.choices[0].delta.content or "" for chunk in streamed if chunk.choices)
    assert text == completion.choices[0].message.content
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{gateway_url}/v1", api_key="wrong").models.list()
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-4", messages=[{"role": "user",
                                                                  "content": "hi"}])
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="customllm", messages=[{"role": "assistant",
                                                                      "content": "hi"}])


def test_text_generation_client_against_the_local_model_server(model_server_url, gateway_url):
    from text_generation import Client

    body = {"inputs": "Say hello.", "parameters": {"max_new_tokens": 4}}
    # Raw prompts skip retrieval, access control and guardrails: never without a key, and
    # never on the gateway's public port.
    assert httpx.post(f"{model_server_url}/generate", json=body).status_code == 401
    assert httpx.post(f"{model_server_url}/generate", json=body,
                      headers={"Authorization": "Bearer cllm_wrong"}).status_code == 401
    assert httpx.post(f"{gateway_url}/generate", json=body,
                      headers=bearer(GATEWAY_USER)).status_code == 404
    client = Client(model_server_url, headers=bearer(GATEWAY_USER), timeout=120)
    response = client.generate("<|im_start|>user\nSay hello.<|im_end|>\n<|im_start|>assistant\n",
                               max_new_tokens=8)
    assert response.generated_text
    assert response.details.generated_tokens <= 8
    streamed = "".join(r.token.text for r in client.generate_stream(
        "<|im_start|>user\nSay hello.<|im_end|>\n<|im_start|>assistant\n", max_new_tokens=8)
        if not r.token.special)
    assert streamed.strip() == response.generated_text.strip()


def test_thousand_retrieval_requests_at_fifty_concurrent_each_get_their_own_reply(
        stack, facts, gateway_url):
    prefix = unique_prefix("load")
    docs = corpus(prefix)
    stack.publish(docs)
    stack.wait_indexed({d.doc_id: 1 for d in docs})
    names = sorted(d.doc_id for d in docs)

    async def run() -> list[tuple[str, dict]]:
        limit = asyncio.Semaphore(50)
        async with httpx.AsyncClient(base_url=gateway_url, timeout=300,
                                     headers=bearer(GATEWAY_USER)) as http:
            async def one(i: int) -> tuple[str, dict]:
                target = names[i % len(names)]
                async with limit:
                    response = await http.post("/v1/chat/completions", json={
                        "model": "customllm", "retrieval_only": True, "use_cache": False,
                        "messages": [{"role": "user", "content": f"question number {i}"}],
                        "filters": {"doc_ids": [target]}})
                assert response.status_code == 200, response.text
                return target, response.json()
            return await asyncio.gather(*(one(i) for i in range(1000)))

    results = asyncio.run(run())
    assert len(results) == 1000
    assert len({body["customllm"]["request_id"] for _, body in results}) == 1000
    for target, body in results:
        assert [c["doc_id"] for c in body["citations"]] == [target]
