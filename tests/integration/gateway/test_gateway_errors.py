"""Gateway behaviour that needs no worker: auth, validation and backpressure, against the real
broker (the app's reply client connects to it at start-up)."""

from __future__ import annotations

import asyncio

import pytest
from fastapi.testclient import TestClient

from services.common.config import get_settings
from services.gateway.app import create_app
from services.gateway.auth import DEV_KEY

pytestmark = pytest.mark.integration
AUTH = {"Authorization": f"Bearer {DEV_KEY}"}
BODY = {"model": "customllm", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def client(stack):
    app = create_app(get_settings(), with_model_server=False)
    with TestClient(app) as test_client:
        yield test_client


def test_busy_gateway_answers_429_at_once_instead_of_queueing(client):
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
])
def test_bad_requests_get_clear_4xx(client, body, code):
    response = client.post("/v1/chat/completions", json=body, headers=AUTH)
    assert response.status_code == code, response.text
    assert response.json()["detail"]


def test_unauthenticated_requests_are_refused(client):
    assert client.post("/v1/chat/completions", json=BODY).status_code == 401
    assert client.get("/v1/models", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert client.get("/healthz").json() == {"status": "ok"}
