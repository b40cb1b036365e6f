"""Which adapter answers a request that names none: the backend's default one, for extractive
answers only. The plan names it, so the reply, the audit and the cache key all carry it."""

from __future__ import annotations

import asyncio

import pytest

from services.rag.pipeline import _default_adapter

pytestmark = pytest.mark.unit


class LocalLike:
    """A backend with a default answer adapter (as the local engine's shipped one)."""

    def __init__(self, served: str | None) -> None:
        self.served = served

    def default_adapter(self) -> str | None:
        return self.served


class Remote:
    """A backend without one (TGI, OpenAI-compatible)."""


@pytest.mark.parametrize(("backend", "mode", "expected"), [
    (LocalLike("answers"), "extractive", "answers"),
    (LocalLike("answers"), "free", None),  # free generation is the base model's
    (LocalLike(None), "extractive", None),  # not installed: the base model answers
    (Remote(), "extractive", None),
])
def test_the_default_adapter_answers_extractive_requests_only(backend, mode, expected):
    assert asyncio.run(_default_adapter(backend, mode)) == expected
