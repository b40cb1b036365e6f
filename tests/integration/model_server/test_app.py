"""The model server (services/model_server/app.py with tgi_routes.py and engine_state.py) as
``python -m services.model_server`` builds it, in process with FastAPI's TestClient and the real
local engine (the packaged SmolLM2): the key check in front of every route but ``/health``, the
TGI body the ``text_generation`` client parses, the limits, and which adapters it serves.

The HTTP client against a running server is tests/e2e/test_query_flow.py; the TGI routes alone
(mounted without the key check) are tests/integration/common/generation/test_tgi_routes_client.py.
The server needs no broker and no database: its settings name the key file and the adapters
directory, here the test's own; only the adapter-registry test uses the stack's Postgres.
"""

from __future__ import annotations

import time
import uuid

import pytest
from fastapi.testclient import TestClient
from text_generation.types import Response as TgiResponse
from text_generation.types import StreamResponse

from services.common import adapter_registry, identity
from services.common.config import Settings
from services.common.events import Principal
from services.common.generation.base import MAX_STOP_SEQUENCES
from services.model_server import engine_state
from services.model_server.app import create_app

pytestmark = pytest.mark.integration

PROMPT = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
CALLER = Principal(id="model-server-caller", groups=["employees"], clearance="internal")
TGI_ROUTES = {("POST", "/generate"), ("POST", "/generate_stream"), ("POST", "/"),
              ("GET", "/info")}


@pytest.fixture(scope="module")
def settings(tmp_path_factory) -> Settings:
    root = tmp_path_factory.mktemp("model-server")
    return Settings(api_keys_file=root / "api-keys.yaml", adapters_dir=root / "adapters")


@pytest.fixture(scope="module")
def key(settings) -> str:
    """Issued as tests/support/keys.py issues them, into the file this server's settings name."""
    return identity.add_key(identity.key_file_path(settings), "model-server-test", CALLER)


@pytest.fixture(scope="module")
def client(settings):
    """The app with its lifespan (the model loads in the background), ready once /health
    says so."""
    app = create_app(settings)
    try:
        with TestClient(app) as test_client:
            deadline = time.monotonic() + 300
            while (health := test_client.get("/health")).status_code != 200:
                assert health.status_code == 503, health.text
                assert health.json()["error_type"] == "healthcheck"
                assert time.monotonic() < deadline, health.text
                time.sleep(0.5)
            yield test_client
    finally:
        engine_state.set_engine(None)


@pytest.fixture
def auth(key) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _generate(client, headers, max_new_tokens=8, **parameters):
    return client.post("/generate", headers=headers, json={
        "inputs": PROMPT, "parameters": {"max_new_tokens": max_new_tokens, **parameters}})


def test_the_app_serves_the_tgi_routes_and_health_only(client):
    routes = {(method.upper(), path) for path, operations in client.app.openapi()["paths"].items()
              for method in operations}
    assert routes == TGI_ROUTES | {("GET", "/health")}
    for path in ("/docs", "/redoc", "/openapi.json"):  # nothing answers without a key
        assert client.get(path).status_code == 404, path


def test_health_needs_no_key_and_says_which_model_is_loaded(client, settings):
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "model_id": settings.local_model_id}
    # the engine the app serves is the one its settings name (adapters from its own directory)
    assert engine_state.get_engine().adapters.root == settings.adapters_dir


@pytest.mark.parametrize("headers", [
    {}, {"Authorization": "Bearer cllm_wrong"}, {"Authorization": "Basic dXNlcjpwYXNz"},
    {"Authorization": "Bearer "},
], ids=["no-key", "wrong-key", "not-bearer", "empty"])
def test_every_tgi_route_refuses_a_missing_or_wrong_key(client, headers):
    for method, path in sorted(TGI_ROUTES):
        response = client.request(method, path, headers=headers,
                                  json={"inputs": PROMPT, "parameters": {"max_new_tokens": 2}})
        assert response.status_code == 401, (method, path, response.text)
        assert response.headers["www-authenticate"] == "Bearer"


def test_the_key_is_checked_before_the_body(client):
    """A caller without a key learns nothing about what the server would accept."""
    response = client.post("/generate", json={"inputs": ""})
    assert response.status_code == 401


def test_a_valid_key_gets_text_within_max_new_tokens_in_tgis_shape(client, auth):
    response = _generate(client, auth, max_new_tokens=8, details=True)
    assert response.status_code == 200, response.text
    parsed = TgiResponse(**response.json())  # what text_generation.Client.generate builds
    assert parsed.generated_text.strip()
    assert 1 <= parsed.details.generated_tokens <= 8
    assert len(parsed.details.tokens) == parsed.details.generated_tokens
    # POST / is what the client calls: the same answer as a one-element list
    compat = client.post("/", headers=auth, json={
        "inputs": PROMPT, "parameters": {"max_new_tokens": 8, "details": True}})
    assert compat.status_code == 200 and isinstance(compat.json(), list)
    assert TgiResponse(**compat.json()[0]).generated_text == parsed.generated_text


def test_the_stream_is_server_sent_events_the_client_parses(client, auth):
    with client.stream("POST", "/generate_stream", headers=auth, json={
            "inputs": PROMPT, "parameters": {"max_new_tokens": 6, "details": True}}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [StreamResponse.model_validate_json(line.removeprefix("data:"))
                  for line in response.iter_lines() if line.startswith("data:")]
    assert 1 <= len(events) <= 6
    assert events[-1].generated_text is not None and events[-1].details is not None
    assert events[-1].details.generated_tokens == len(events)
    assert all(e.generated_text is None and e.details is None for e in events[:-1])


def test_info_names_the_served_model_and_its_limits(client, auth, settings):
    info = client.get("/info", headers=auth).json()
    assert info["model_id"] == settings.local_model_id
    assert info["max_stop_sequences"] == MAX_STOP_SEQUENCES
    assert info["max_input_tokens"] < info["max_total_tokens"]
    assert info["adapters"] == []  # its own, empty adapters directory


@pytest.mark.parametrize("parameters, message", [
    ({"max_new_tokens": 0}, "max_new_tokens"),
    ({"max_new_tokens": 1_000_000}, "exceeds the model's"),
    ({"stop": ["x"] * (MAX_STOP_SEQUENCES + 1)}, "stop"),
    ({"best_of": 2}, "not supported by this server: best_of > 1"),
    ({"top_p": 1.0}, "top_p"),
])
def test_parameters_beyond_the_limits_are_422_with_tgis_error_body(client, auth, parameters,
                                                                    message):
    response = client.post("/generate", headers=auth,
                           json={"inputs": PROMPT, "parameters": parameters})
    assert response.status_code == 422, response.text
    assert response.json()["error_type"] == "validation"
    assert message in response.json()["error"]


def test_a_prompt_longer_than_the_context_is_422_not_truncated(client, auth):
    max_total = client.get("/info", headers=auth).json()["max_total_tokens"]
    response = client.post("/generate", headers=auth, json={
        "inputs": "word " * max_total, "parameters": {"max_new_tokens": 2}})
    assert response.status_code == 422 and "exceeds the model's" in response.json()["error"]


def test_a_revoked_key_is_refused_on_the_next_request(client, settings):
    path = identity.key_file_path(settings)
    key = identity.add_key(path, "model-server-revoke-me", Principal(id="temp-ms"))
    headers = {"Authorization": f"Bearer {key}"}
    assert client.get("/info", headers=headers).status_code == 200
    assert identity.revoke_key(path, "model-server-revoke-me")
    assert client.get("/info", headers=headers).status_code == 401


@pytest.mark.parametrize("adapter", ["nope", "../adapters", "x/y"])
def test_an_unknown_adapter_is_refused_naming_the_available_ones(client, auth, adapter):
    response = _generate(client, auth, max_new_tokens=2, adapter_id=adapter)
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["error_type"] == "unknown_adapter" and body["available_adapters"] == []


def test_a_registered_version_is_served_by_name_only_while_promoted(stack, client, auth,
                                                                    settings, tmp_path):
    """The real registry (Postgres rows, version folders, the name link): a candidate is not
    served under its name until promoted, and no longer once retired."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    engine = engine_state.get_engine()
    torch.manual_seed(7)
    base = AutoModelForCausalLM.from_pretrained(engine.load_info.folder)
    lora = LoraConfig(r=2, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                      init_lora_weights=False, task_type="CAUSAL_LM")
    get_peft_model(base, lora).save_pretrained(tmp_path / "trained")
    name = f"ms-{uuid.uuid4().hex[:8]}"
    adapters_dir = settings.adapters_dir
    version = adapter_registry.register(
        stack.engine, name=name, source_dir=tmp_path / "trained", adapters_dir=adapters_dir,
        base_model=settings.local_model_id, method="lora", job_id=None, snapshot_id=None,
        dataset_hash=None, hyperparameters={"r": 2})

    candidate = _generate(client, auth, max_new_tokens=2, adapter_id=name)
    assert candidate.status_code == 400 and candidate.json()["error_type"] == "unknown_adapter"
    assert name not in candidate.json()["available_adapters"]

    adapter_registry.promote(stack.engine, name, version.version, adapters_dir)
    served = _generate(client, auth, max_new_tokens=8, adapter_id=name)
    assert served.status_code == 200, served.text
    assert name in client.get("/info", headers=auth).json()["adapters"]
    assert served.json()["generated_text"] != _generate(client, auth).json()["generated_text"]

    adapter_registry.retire(stack.engine, name, version.version, adapters_dir)
    retired = _generate(client, auth, max_new_tokens=2, adapter_id=name)
    assert retired.status_code == 400 and retired.json()["error_type"] == "unknown_adapter"
