"""The gateway's app factory (services/gateway/app.py) beyond what test_gateway_errors.py covers
(auth, validation, 429, a declared oversized body, no TGI routes): the public route table, the
body limit taken from the gateway settings and applied to a chunked body that declares no
length, and the lifespan (``/healthz`` 503 until the reply client is connected, and again once
shutdown has closed it). Real broker, no mocks."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from services.common.config import get_settings
from services.gateway.app import create_app
from services.gateway.config import GatewaySettings
from tests.support.keys import GATEWAY_USER, bearer

pytestmark = pytest.mark.integration
LIMIT = 2_000


@pytest.fixture(scope="module")
def small_limit(stack):
    """Built as the process builds it, with its own gateway settings; no lifespan, since the
    body limit answers before any route (and so before the reply client) is needed."""
    return TestClient(create_app(get_settings(), GatewaySettings(gateway_max_body_bytes=LIMIT)))


def _chunked(body: dict, piece: int = 500):
    raw = json.dumps(body).encode()
    return (raw[i:i + piece] for i in range(0, len(raw), piece))


def test_the_public_routes_are_the_openai_api_feedback_and_health(small_limit):
    paths = {path: sorted(ops) for path, ops in small_limit.app.openapi()["paths"].items()}
    assert paths == {"/v1/models": ["get"], "/v1/chat/completions": ["post"],
                     "/v1/feedback": ["post"], "/healthz": ["get"]}


def test_the_body_limit_comes_from_the_gateway_settings(small_limit):
    body = {"model": "customllm", "messages": [{"role": "user", "content": "x" * LIMIT}]}
    response = small_limit.post("/v1/chat/completions", json=body, headers=bearer(GATEWAY_USER))
    assert response.status_code == 413
    assert response.json() == {"detail": f"request body larger than {LIMIT} bytes"}


def test_a_chunked_body_without_a_length_is_cut_off_at_the_limit(small_limit):
    auth = bearer(GATEWAY_USER)
    big = {"model": "customllm", "messages": [{"role": "user", "content": "x" * LIMIT}]}
    response = small_limit.post("/v1/chat/completions", content=_chunked(big),
                                headers={**auth, "Content-Type": "application/json"})
    assert response.request.headers.get("transfer-encoding") == "chunked"
    assert "content-length" not in response.request.headers
    assert response.status_code == 413
    # under the limit, the body the middleware read is the one the route parses
    small = {"model": "customllm", "messages": []}
    response = small_limit.post("/v1/chat/completions", content=_chunked(small, 8),
                                headers={**auth, "Content-Type": "application/json"})
    assert response.status_code == 422 and "messages" in response.text


def test_health_follows_the_reply_client_through_start_and_shutdown(stack):
    app = create_app(get_settings())
    client = TestClient(app)
    assert client.get("/healthz").status_code == 503
    assert client.get("/healthz").json() == {"status": "starting"}
    with client:
        reply_client = app.state.gateway.client
        assert reply_client is not None
        assert client.get("/healthz").json() == {"status": "ok"}
    assert app.state.gateway.client is None
    assert not reply_client._thread.is_alive()  # closed, its consumer with it
    assert client.get("/healthz").status_code == 503
