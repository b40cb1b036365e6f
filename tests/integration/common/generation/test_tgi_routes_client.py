"""The gateway's TGI routes against the real ``text_generation`` clients (sync and async)."""

import asyncio

import httpx
import pytest
from text_generation import AsyncClient, Client
from text_generation.errors import BadRequestError, ValidationError, parse_error
from text_generation.types import FinishReason

from services.common.generation.chatml import render_chatml
from services.common.generation.engine_types import SamplingParams

pytestmark = pytest.mark.integration

PROMPT = render_chatml([{"role": "system", "content": "Answer in one sentence."},
                        {"role": "user", "content": "What is the capital of France?"}])


def test_sync_client_generate_matches_the_engine(tgi_url, engine):
    response = Client(tgi_url, timeout=60).generate(PROMPT, max_new_tokens=24,
                                                     decoder_input_details=True)
    expected = engine.generate_raw(PROMPT, SamplingParams(max_new_tokens=24))
    assert response.generated_text == expected.text and "Paris" in response.generated_text
    details = response.details
    assert details.finish_reason == FinishReason.EndOfSequenceToken
    assert details.generated_tokens == len(details.tokens) == expected.completion_tokens
    assert [t.id for t in details.prefill] == list(expected.prompt_ids)
    assert details.tokens[-1].special and details.tokens[-1].text == "<|im_end|>"
    assert all(t.logprob is not None and t.logprob <= 0 for t in details.tokens)
    assert "".join(t.text for t in details.tokens if not t.special) == response.generated_text


def test_sync_client_stream_concatenates_to_the_generated_text(tgi_url):
    client = Client(tgi_url, timeout=60)
    events = list(client.generate_stream(PROMPT, max_new_tokens=24))
    assert len(events) > 3
    assert all(e.generated_text is None and e.details is None for e in events[:-1])
    final = events[-1]
    assert final.details.finish_reason == FinishReason.EndOfSequenceToken
    assert final.details.generated_tokens == len(events)
    text = "".join(e.token.text for e in events if not e.token.special)
    assert text == final.generated_text == client.generate(PROMPT, max_new_tokens=24) \
        .generated_text


def test_async_client_generate_and_stream(tgi_url):
    async def run():
        client = AsyncClient(tgi_url, timeout=60)
        response = await client.generate(PROMPT, max_new_tokens=6)
        events = [e async for e in client.generate_stream(PROMPT, max_new_tokens=6)]
        return response, events

    response, events = asyncio.run(run())
    assert response.details.finish_reason == FinishReason.Length
    assert response.details.generated_tokens == 6 == len(events)
    assert events[-1].generated_text == response.generated_text


def test_stop_sequence_is_kept_in_the_text_like_tgi(tgi_url):
    response = Client(tgi_url, timeout=60).generate(PROMPT, max_new_tokens=24,
                                                     stop_sequences=["capital"])
    assert response.details.finish_reason == FinishReason.StopSequence
    assert response.generated_text.endswith("capital")


def test_sampling_reports_its_seed_and_repeats_with_it(tgi_url):
    client = Client(tgi_url, timeout=60)
    first = client.generate(PROMPT, max_new_tokens=8, do_sample=True, temperature=0.9, seed=42)
    again = client.generate(PROMPT, max_new_tokens=8, do_sample=True, temperature=0.9, seed=42)
    assert first.details.seed == 42 and first.generated_text == again.generated_text
    unseeded = client.generate(PROMPT, max_new_tokens=4, temperature=0.9)
    assert unseeded.details.seed is not None


def test_return_full_text_prepends_the_prompt(tgi_url):
    response = Client(tgi_url, timeout=60).generate(PROMPT, max_new_tokens=3,
                                                     return_full_text=True)
    assert response.generated_text.startswith(PROMPT)


def test_info_and_health(tgi_url, engine):
    info = httpx.get(f"{tgi_url}/info").json()
    assert info["model_id"] == engine.model_id
    assert info["model_dtype"] == "torch.float32"
    assert info["max_total_tokens"] == engine.max_total_tokens
    assert info["max_input_tokens"] < info["max_total_tokens"]
    assert isinstance(info["adapters"], list)
    health = httpx.get(f"{tgi_url}/health")
    assert health.status_code == 200 and health.json()["status"] == "ok"


def test_unknown_adapter_is_a_400_naming_the_available_ones(tgi_url):
    body = {"inputs": PROMPT, "parameters": {"max_new_tokens": 4, "adapter_id": "nope"}}
    for path in ("/generate", "/generate_stream", "/"):
        response = httpx.post(f"{tgi_url}{path}", json=body)
        assert response.status_code == 400, path
        payload = response.json()
        assert payload["error_type"] == "unknown_adapter"
        assert "unknown adapter 'nope'; available adapters:" in payload["error"]
        assert isinstance(payload["available_adapters"], list)


def test_server_side_errors_parse_as_the_clients_exceptions(tgi_url, engine):
    # The client validates most parameters itself; these two only the server can know.
    too_long = httpx.post(f"{tgi_url}/", json={"inputs": "word " * engine.max_total_tokens})
    assert too_long.status_code == 422 and "exceeds the model's" in too_long.json()["error"]
    assert isinstance(parse_error(too_long.status_code, too_long.json()), ValidationError)
    # The 0.7 client cannot send adapter_id: post what it would, with the field added.
    unknown = httpx.post(f"{tgi_url}/", json={"inputs": PROMPT,
                                              "parameters": {"adapter_id": "x"}})
    assert isinstance(parse_error(unknown.status_code, unknown.json()), BadRequestError)
