"""The console's app factory (services/console/app.py) beyond the pages, login, CSRF and roles
that test_console_access.py and test_console_pages.py cover: the security headers on every kind
of response, the static files, no API docs, the error pages, and the session-signing key file
named by the console settings (created 0600, shared by every app that names it).

None of this reads the database, so the app is built from settings of its own (a key file and
a session key in a temporary folder) and needs no stack."""

from __future__ import annotations

import stat

import pytest
from fastapi.testclient import TestClient

from services.common import identity
from services.common.config import Settings
from services.common.events import Principal
from services.console.app import create_app
from services.console.config import ConsoleSettings
from tests.integration.console.conftest import csrf_of

pytestmark = pytest.mark.integration

HEADERS = {
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
    "content-security-policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; "
                               "frame-ancestors 'none'",
}
VIEWER = Principal(id="cleo-console-app", groups=["employees"], clearance="internal")


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    root = tmp_path_factory.mktemp("console-app")
    return {"keys": root / "api-keys.yaml", "secret": root / "secrets" / "session.key"}


@pytest.fixture(scope="module")
def make_app(paths):
    def make():
        return create_app(Settings(api_keys_file=paths["keys"]),
                          ConsoleSettings(session_secret_file=paths["secret"]))
    return make


@pytest.fixture
def client(make_app):
    with TestClient(make_app(), follow_redirects=False) as test_client:
        yield test_client


def test_every_kind_of_response_carries_the_security_headers(client):
    responses = {
        "page": client.get("/login"),
        "redirect": client.get("/"),
        "static": client.get("/static/console.css"),
        "not found": client.get("/no-such-page"),
        "health": client.get("/healthz"),
    }
    assert [r.status_code for r in responses.values()] == [200, 303, 200, 404, 200]
    for kind, response in responses.items():
        for name, value in HEADERS.items():
            assert response.headers.get(name) == value, (kind, name)


def test_an_unknown_page_or_method_gets_the_console_error_page_not_json(client):
    for response, code in [(client.get("/no-such-page"), 404), (client.put("/login"), 405)]:
        assert response.status_code == code
        assert response.headers["content-type"].startswith("text/html")
        assert f"<title>{code} · customllm</title>" in response.text


def test_static_files_are_served_without_a_login(client):
    css = client.get("/static/console.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    js = client.get("/static/htmx.min.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]


def test_home_redirects_to_the_catalog_and_health_needs_no_login(client):
    home = client.get("/")
    assert home.status_code == 303 and home.headers["location"] == "/catalog"
    assert client.get("/healthz").json() == {"status": "ok"}


@pytest.mark.parametrize("path", ["/docs", "/redoc", "/openapi.json"])
def test_no_api_docs_are_served(client, path):
    assert client.get(path).status_code == 404


def test_errors_raised_by_the_routes_are_html_pages(client):
    refused = client.post("/logout", data={"csrf": "forged"})  # HTTPException from a dependency
    assert refused.status_code == 403 and refused.headers["content-type"].startswith("text/html")
    assert "<h1>403</h1>" in refused.text and "CSRF" in refused.text
    token = csrf_of(client.get("/login").text)
    invalid = client.post("/login", data={"credential": "x" * 8193, "csrf": token})
    assert invalid.status_code == 422 and invalid.headers["content-type"].startswith("text/html")
    assert "<h1>422</h1>" in invalid.text and "credential" in invalid.text


def test_the_session_key_is_made_0600_and_every_app_naming_it_shares_sessions(make_app, paths,
                                                                           tmp_path):
    first = TestClient(make_app(), follow_redirects=False)
    assert stat.S_IMODE(paths["secret"].stat().st_mode) == 0o600
    key = identity.add_key(paths["keys"], "console-app-test", VIEWER)
    token = csrf_of(first.get("/login").text)
    assert first.post("/login", data={"credential": key, "csrf": token}).status_code == 303
    # a second app (another replica, or after a restart) reads the same key: same session
    second = TestClient(make_app(), follow_redirects=False, cookies=first.cookies)
    assert f"{VIEWER.id} · viewer" in second.get("/login").text
    other_key = create_app(Settings(api_keys_file=paths["keys"]),
                           ConsoleSettings(session_secret_file=tmp_path / "other.key"))
    stranger = TestClient(other_key, follow_redirects=False, cookies=first.cookies)
    assert VIEWER.id not in stranger.get("/login").text
