"""The local engine: one load, the model's own chat template, exact streaming, serialization
and cancellation."""

import asyncio
import threading
import time

import pytest

from services.common import model_store
from services.common.config import Settings
from services.common.generation.base import (
    GenerationError,
    GenerationRequest,
    InvalidGenerationRequest,
)
from services.common.generation.chatml import render_chatml
from services.common.generation.contract import LONG_MESSAGES, MESSAGES
from services.common.generation.decoding import IncrementalDecoder
from services.common.generation.engine_types import SamplingParams
from services.common.generation.local_backend import LocalBackend
from services.common.generation.local_engine import LocalEngine

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("messages", [
    MESSAGES,
    [{"role": "user", "content": "Hi"}],
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
     {"role": "user", "content": "How are you?\nTell me."}],
])
def test_the_tgi_backends_chatml_equals_the_models_chat_template(engine, messages):
    assert render_chatml(messages) == engine.chat_prompt(messages)


def test_decoded_pieces_concatenate_to_the_text_even_across_split_characters(engine):
    text = "Café 🙂 naïve — 東京 and ünïcödé\nsecond line"
    decoder = IncrementalDecoder(engine.tokenizer)
    pieces = [decoder.push(token_id) for token_id in engine.encode(text)]
    pieces.append(decoder.flush())
    assert "".join(pieces) == decoder.text == text
    assert "" in pieces  # some token only started a character (the emoji's bytes)


def test_a_second_engine_loads_from_the_cache_once_under_concurrent_calls(engine, monkeypatch):
    calls = []
    real = model_store.load_model

    def counting(*args):
        calls.append(threading.current_thread().name)
        return real(*args)

    monkeypatch.setattr(model_store, "load_model", counting)
    fresh = LocalEngine.from_settings(Settings(adapters_dir=engine.adapters.root))
    threads = [threading.Thread(target=fresh.load) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1
    assert fresh.load_info.converted is False and fresh.load_info.folder is not None
    assert fresh.generate_chat(MESSAGES, SamplingParams.chat(8, 0.0)).text == \
        engine.generate_chat(MESSAGES, SamplingParams.chat(8, 0.0)).text


def test_concurrent_requests_are_serialized_and_stay_deterministic(engine):
    async def run():
        return await asyncio.gather(*(
            engine.agenerate_chat(MESSAGES, SamplingParams.chat(12, 0.0)) for _ in range(3)))

    texts = {completion.text for completion in asyncio.run(run())}
    assert len(texts) == 1


def _released_soon(engine) -> bool:
    if engine._lock.acquire(timeout=5):
        engine._lock.release()
        return True
    return False


def test_a_timeout_stops_the_generation_instead_of_leaving_it_running(engine):
    backend = LocalBackend(engine, timeout_s=0.5)
    request_started = time.perf_counter()
    with pytest.raises(GenerationError, match="timed out after 0.5 s"):
        asyncio.run(backend.generate(GenerationRequest(messages=LONG_MESSAGES, max_tokens=400)))
    assert time.perf_counter() - request_started < 5
    assert _released_soon(engine)


def test_leaving_a_stream_early_stops_the_generation(engine):
    async def first_piece():
        stream = engine.astream_chat(LONG_MESSAGES, SamplingParams.chat(400, 0.0))
        async for piece in stream:
            await stream.aclose()
            return piece

    assert asyncio.run(first_piece())
    assert _released_soon(engine)


def test_sampling_runs_and_a_too_long_request_is_refused(engine):
    sampled = engine.generate_chat(MESSAGES, SamplingParams.chat(8, 0.8))
    assert 0 < sampled.completion_tokens <= 8
    with pytest.raises(InvalidGenerationRequest, match="exceeds the model's"):
        engine.generate_chat(MESSAGES, SamplingParams.chat(engine.max_total_tokens, 0.0))
