"""Fixtures for retrieval tests: rows written straight into ``documents`` / ``chunks`` (no
workers needed), each test under its own unique doc-id prefix because the database is shared."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from services.common.embeddings import Embedder, embedder_from_settings
from tests.integration.rag.rows import write_documents


@pytest.fixture(scope="session")
def embedder(stack) -> Embedder:
    model = embedder_from_settings(stack.settings)
    model.warm_up()
    return model


@pytest.fixture
def insert_documents(stack) -> Callable[..., None]:
    return lambda docs, rng=None: write_documents(stack.engine, docs, rng)
