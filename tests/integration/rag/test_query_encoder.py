"""The rag worker's question encoder with the input stage's vector: searched with when it is
the vector of the model the index serves (read from the real registry), encoded afresh when it
is another model's."""

from __future__ import annotations

import numpy as np
import pytest

from services.common.embeddings import E5_SMALL
from services.common.events import QuestionVector
from services.rag.query_encoder import QueryEncoder

pytestmark = pytest.mark.integration

QUESTION = "Where is the Zephyr cooling loop inspected?"


def test_the_active_models_carried_vector_is_used_and_another_models_is_not(stack, embedder):
    encoder = QueryEncoder(stack.engine, embedder, ttl_s=0.0)
    model_id, own = encoder.encode(QUESTION)
    # A different vector than the question's own shows which one came back.
    other = embedder.encode_queries(["How do tides work?"])[0]
    assert float(other @ own) < 0.9

    used_model, used = encoder.encode(QUESTION, QuestionVector.of(model_id, other))
    assert used_model == model_id and np.array_equal(used, other)

    elsewhere_model, elsewhere = encoder.encode(QUESTION, QuestionVector.of(E5_SMALL, other))
    assert elsewhere_model == model_id and float(elsewhere @ own) > 0.9999
