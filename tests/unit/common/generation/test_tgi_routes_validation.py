"""The TGI routes refuse bad requests with TGI's error body, before touching the model."""

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from services.model_server import engine_state, tgi_routes

pytestmark = pytest.mark.unit


class _UnloadedEngine:
    model_id = "test/model"
    loaded = False
    load_error = None

    def load(self):
        raise AssertionError("validation must fail before the model is needed")


@pytest.fixture
def client():
    app = FastAPI()
    app.include_router(tgi_routes.router)
    engine = _UnloadedEngine()
    app.dependency_overrides[engine_state.get_engine] = lambda: engine
    yield TestClient(app), engine  # no "with": the lifespan (background load) does not run


@pytest.mark.parametrize(("body", "message"), [
    ({"inputs": ""}, "inputs"),
    ({"parameters": {}}, "inputs: Field required"),
    ({"inputs": "x", "parameters": {"max_new_tokens": 0}}, "max_new_tokens"),
    ({"inputs": "x", "parameters": {"temperature": 0}}, "temperature"),
    ({"inputs": "x", "parameters": {"top_p": 1.0}}, "top_p"),
    ({"inputs": "x", "parameters": {"stop": ["a", "b", "c", "d", "e"]}}, "stop"),
    ({"inputs": "x", "parameters": {"stop": [""]}}, "stop sequences must not be empty"),
    ({"inputs": "x", "parameters": {"best_of": 2, "grammar": {"type": "json", "value": {}}}},
     "not supported by this server: best_of > 1, grammar"),
])
@pytest.mark.parametrize("path", ["/generate", "/generate_stream", "/"])
def test_bad_requests_get_422_with_tgi_error_body(client, path, body, message):
    response = client[0].post(path, json=body)
    assert response.status_code == 422
    assert response.json()["error_type"] == "validation"
    assert message in response.json()["error"]


def test_a_body_that_is_not_json_is_a_validation_error(client):
    response = client[0].post("/generate", content=b"{nope",
                              headers={"content-type": "application/json"})
    assert response.status_code == 422 and "not valid JSON" in response.json()["error"]


def test_health_is_503_until_the_model_is_loaded(client):
    http, engine = client
    response = http.get("/health")
    assert response.status_code == 503
    assert response.json() == {"error": "model is loading", "error_type": "healthcheck"}
    engine.load_error = "GenerationError: GGUF model file not found: /x"
    assert "model failed to load: GenerationError" in http.get("/health").json()["error"]


def test_sampling_follows_tgi_rules():
    greedy = tgi_routes.GenerateParameters().sampling()
    assert not greedy.do_sample and greedy.max_new_tokens == tgi_routes.DEFAULT_MAX_NEW_TOKENS
    assert tgi_routes.GenerateParameters(temperature=0.5).sampling().do_sample
    assert not tgi_routes.GenerateParameters(temperature=1.0).sampling().do_sample
    assert tgi_routes.GenerateParameters(top_k=5).sampling().do_sample
    params = tgi_routes.GenerateParameters(max_new_tokens=7, stop=["x"], truncate=10, seed=3,
                                           do_sample=True).sampling()
    assert (params.max_new_tokens, params.stop, params.truncate, params.seed) == \
        (7, ("x",), 10, 3)
