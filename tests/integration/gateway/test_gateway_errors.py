"""Gateway behaviour that needs no worker: auth, validation and backpressure, against the real
broker (the app's reply client connects to it at start-up)."""

from __future__ import annotations

import asyncio

import pytest
from fastapi.testclient import TestClient

from services.common import identity
from services.common.config import get_settings
from services.common.events import Principal
from services.gateway.app import create_app
from tests.support.keys import GATEWAY_USER, bearer, key_for

pytestmark = pytest.mark.integration
BODY = {"model": "customllm", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def client(stack):
    app = create_app(get_settings())
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def AUTH(stack):  # noqa: N802 - reads like the header constant it replaces
    return bearer(GATEWAY_USER)


def test_busy_gateway_answers_429_at_once_instead_of_queueing(client, AUTH):
    state = client.app.state.gateway
    original = state.inflight
    state.inflight = asyncio.Semaphore(0)  # every slot taken
    try:
        response = client.post("/v1/chat/completions", json=BODY, headers=AUTH)
    finally:
        state.inflight = original
    assert response.status_code == 429
    assert response.headers["retry-after"] == "1"


@pytest.mark.parametrize("body, code", [
    ({**BODY, "messages": []}, 422),
    ({**BODY, "max_tokens": 0}, 422),
    ({**BODY, "model": "gpt-4"}, 404),
    ({**BODY, "model": "customllm:../../x"}, 400),
    ({**BODY, "messages": [{"role": "user", "content": "   "}]}, 400),
    ({**BODY, "filters": {"unknown": 1}}, 422),
    ({**BODY, "messages": [{"role": "user", "content": "x" * 8001}]}, 422),
    ({**BODY, "messages": [{"role": "user", "content": "q"}] * 52}, 422),
])
def test_bad_requests_get_clear_4xx(client, AUTH, body, code):
    response = client.post("/v1/chat/completions", json=body, headers=AUTH)
    assert response.status_code == code, response.text
    assert response.json()["detail"]


def test_unauthenticated_requests_are_refused(client):
    assert client.post("/v1/chat/completions", json=BODY).status_code == 401
    assert client.get("/v1/models", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert client.get("/healthz").json() == {"status": "ok"}


def test_no_development_key_exists_by_default(client):
    for key in ("customllm-dev-key", "dev", ""):
        response = client.get("/v1/models", headers={"Authorization": f"Bearer {key}"})
        assert response.status_code == 401


def test_a_revoked_key_is_refused_on_the_next_request_without_a_restart(client):
    path = identity.key_file_path(get_settings())
    key = identity.add_key(path, "revoke-me", Principal(id="temp"))
    assert client.get("/v1/models", headers={"Authorization": f"Bearer {key}"}).status_code \
        == 200
    assert identity.revoke_key(path, "revoke-me")
    assert client.get("/v1/models", headers={"Authorization": f"Bearer {key}"}).status_code \
        == 401


def test_a_key_limited_to_a_domain_cannot_choose_another(client):
    key = key_for(Principal(id="hr-only", clearance="internal"), domains=("hr",))
    response = client.post("/v1/chat/completions", json={**BODY, "domain": "finance"},
                           headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 403 and "hr" in response.json()["detail"]


def test_oversized_bodies_are_413_before_they_are_parsed(client, AUTH):
    big = {**BODY, "messages": [{"role": "user", "content": "x" * 300_000}]}
    response = client.post("/v1/chat/completions", json=big, headers=AUTH)
    assert response.status_code == 413 and "larger than" in response.json()["detail"]


def test_tgi_routes_are_not_on_the_public_gateway(client, AUTH):
    body = {"inputs": "hello", "parameters": {"max_new_tokens": 2}}
    for path in ("/generate", "/generate_stream", "/info"):
        assert client.request("POST" if path != "/info" else "GET", path, json=body,
                              headers=AUTH).status_code in (404, 405)


def test_an_invalid_request_leaves_no_pending_reply(client, AUTH):
    """A request that fails validation on its way out must not leak a waiting future."""
    reply_client = client.app.state.gateway.client
    before = reply_client.pending_count()
    bad = {**BODY, "filters": {"doc_ids": ["x"] * 5000}}  # beyond the schema's limits
    response = client.post("/v1/chat/completions", json=bad, headers=AUTH)
    assert response.status_code == 422 and "doc_ids" in response.json()["detail"]
    assert reply_client.pending_count() == before
