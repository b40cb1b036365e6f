"""The input stage's question vector on the rag side: used only for the active model, at the
encoder's width, finite and unit length; taken off the request before the draft's evidence."""

import numpy as np
import pytest

from services.common.events import QuestionVector, RagRequest, Screening
from services.rag.query_encoder import usable_vector
from services.rag.screening import take_question_vector

pytestmark = pytest.mark.unit

MODEL = "sentence-transformers/all-MiniLM-L6-v2+onnx-int8"


def unit(dim: int = 384, seed: int = 3) -> np.ndarray:
    vector = np.random.default_rng(seed).normal(size=dim).astype(np.float32)
    return vector / np.linalg.norm(vector)


def test_a_vector_survives_the_round_trip_exactly():
    vector = unit()
    carried = QuestionVector.of(MODEL, vector)
    assert len(carried.float32_base64) == 2048  # 384 float32s
    assert np.array_equal(carried.array(), vector)


def test_only_the_active_models_vector_of_the_right_width_is_used():
    vector = unit()
    assert np.array_equal(usable_vector(QuestionVector.of(MODEL, vector), MODEL, 384), vector)
    assert usable_vector(QuestionVector.of(MODEL, vector), "intfloat/multilingual-e5-small",
                         384) is None
    assert usable_vector(QuestionVector.of(MODEL, unit(256)), MODEL, 384) is None
    assert usable_vector(None, MODEL, 384) is None


def test_a_vector_that_is_not_a_unit_vector_is_encoded_again():
    assert usable_vector(QuestionVector.of(MODEL, unit() * 3), MODEL, 384) is None
    broken = unit()
    broken[7] = np.nan
    assert usable_vector(QuestionVector.of(MODEL, broken), MODEL, 384) is None
    odd = QuestionVector(model_id=MODEL, float32_base64="AAAA")  # 3 bytes: not a float32
    assert usable_vector(odd, MODEL, 384) is None


def test_the_vector_is_taken_off_the_request_and_the_directives_stay():
    carried = QuestionVector.of(MODEL, unit())
    screening = Screening(policy_version="default@2", canary="cnry-1",
                          question_vector=carried)
    request = RagRequest(request_id="r1", reply_to="rag.replies.x", question="q?",
                         screening=screening)
    taken, rest = take_question_vector(request)
    assert taken == carried
    assert rest.screening == screening.model_copy(update={"question_vector": None})
    assert take_question_vector(rest) == (None, rest)
