"""The evaluation tests' deterministic embedder, for the claim-support tests."""

from __future__ import annotations

import pytest

from tests.unit.common.evaluation.conftest import bag_of_words_embed


@pytest.fixture
def fake_embed():
    return bag_of_words_embed
