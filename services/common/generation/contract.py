"""The behaviour every :class:`GenerationBackend` must show, shipped as a reusable test suite.

A backend's tests inherit the suite and provide the backend::

    class TestMyBackend(GenerationBackendContract):
        @pytest.fixture(scope="class")
        def backend(self):
            return MyBackend(...)

The checks are also plain ``async`` functions (:data:`CHECKS`), so they can be run against a
live deployment without pytest. They need a real model: greedy decoding must be
deterministic, and answers must be a few words long.

The module imports pytest (a dev dependency), so only tests import it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest

from services.common.generation.base import (
    GenerationBackend,
    GenerationError,
    GenerationRequest,
)

# A system turn keeps the prompt identical across backends (SmolLM2's template adds a default
# one otherwise) and the answer short and wordy enough to cut at a stop sequence.
MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant. Answer in one sentence."},
    {"role": "user", "content": "Name three colours of the rainbow."},
]
LONG_MESSAGES = [{"role": "user", "content": "Write a long story about a dragon and a knight."}]
MISSING_ADAPTER = "no-such-adapter-7f3a"


def request(max_tokens: int = 20, **changes: Any) -> GenerationRequest:
    return GenerationRequest(messages=changes.pop("messages", MESSAGES), max_tokens=max_tokens,
                             **changes)


async def collect(pieces: AsyncIterator[str]) -> list[str]:
    return [piece async for piece in pieces]


async def check_greedy_is_deterministic(backend: GenerationBackend) -> None:
    first = await backend.generate(request())
    second = await backend.generate(request())
    assert first.text.strip(), "greedy generation returned an empty answer"
    assert first.text == second.text, f"greedy output differs: {first.text!r} / {second.text!r}"
    assert first.finish_reason in ("stop", "length")


async def check_max_tokens_respected(backend: GenerationBackend) -> None:
    result = await backend.generate(request(max_tokens=5, messages=LONG_MESSAGES))
    assert 0 < result.completion_tokens <= 5, result
    assert result.finish_reason == "length", result


async def check_stream_matches_generate(backend: GenerationBackend) -> None:
    generated = await backend.generate(request())
    pieces = await collect(backend.stream(request()))
    assert len(pieces) > 1, f"the stream came in one piece: {pieces!r}"
    assert "".join(pieces) == generated.text


async def check_token_counts_positive(backend: GenerationBackend) -> None:
    result = await backend.generate(request())
    assert result.prompt_tokens > 0 and result.completion_tokens > 0, result
    assert result.model, "the result names no model"
    assert result.adapter is None


async def check_stop_sequence_cuts_the_answer(backend: GenerationBackend) -> None:
    base = await backend.generate(request(max_tokens=24))
    words = base.text.split()
    assert len(words) >= 3, f"answer too short to pick a stop sequence from: {base.text!r}"
    stop = words[2]
    expected = base.text[:base.text.find(stop)]
    stopped = await backend.generate(request(max_tokens=24, stop=(stop,)))
    assert stopped.text == expected, (stop, stopped.text, expected)
    assert stopped.finish_reason == "stop"
    streamed = await collect(backend.stream(request(max_tokens=24, stop=(stop,))))
    assert "".join(streamed) == expected


async def check_unknown_adapter_raises(backend: GenerationBackend,
                                       error: type[GenerationError] = GenerationError) -> None:
    for attempt in ("generate", "stream"):
        try:
            if attempt == "generate":
                await backend.generate(request(adapter=MISSING_ADAPTER))
            else:
                await collect(backend.stream(request(adapter=MISSING_ADAPTER)))
        except error as exc:
            assert MISSING_ADAPTER in str(exc), f"the error does not name the adapter: {exc}"
        else:
            raise AssertionError(f"{attempt} with an unknown adapter did not raise {error}")


CHECKS: tuple[Callable[[GenerationBackend], Awaitable[None]], ...] = (
    check_greedy_is_deterministic, check_max_tokens_respected, check_stream_matches_generate,
    check_token_counts_positive, check_stop_sequence_cuts_the_answer,
    check_unknown_adapter_raises,
)


class GenerationBackendContract:
    """Inherit, provide a ``backend`` fixture; set ``unknown_adapter_error`` to
    ``UnknownAdapter`` for backends that can tell a missing adapter apart."""

    unknown_adapter_error: type[GenerationError] = GenerationError

    @pytest.fixture(scope="class")
    def contract_loop(self) -> Iterator[asyncio.Runner]:
        # One loop for the whole class: HTTP clients keep connections bound to their loop.
        with asyncio.Runner() as runner:
            yield runner

    def test_greedy_is_deterministic(self, backend: GenerationBackend,
                                     contract_loop: asyncio.Runner) -> None:
        contract_loop.run(check_greedy_is_deterministic(backend))

    def test_max_tokens_respected(self, backend: GenerationBackend,
                                  contract_loop: asyncio.Runner) -> None:
        contract_loop.run(check_max_tokens_respected(backend))

    def test_stream_matches_generate(self, backend: GenerationBackend,
                                     contract_loop: asyncio.Runner) -> None:
        contract_loop.run(check_stream_matches_generate(backend))

    def test_token_counts_positive(self, backend: GenerationBackend,
                                   contract_loop: asyncio.Runner) -> None:
        contract_loop.run(check_token_counts_positive(backend))

    def test_stop_sequence_cuts_the_answer(self, backend: GenerationBackend,
                                           contract_loop: asyncio.Runner) -> None:
        contract_loop.run(check_stop_sequence_cuts_the_answer(backend))

    def test_unknown_adapter_raises(self, backend: GenerationBackend,
                                    contract_loop: asyncio.Runner) -> None:
        contract_loop.run(check_unknown_adapter_raises(backend, self.unknown_adapter_error))

