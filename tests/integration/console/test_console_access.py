"""Login, sessions, CSRF and roles of the web console, against the real Postgres."""

from __future__ import annotations

import pytest

from services.common import identity
from services.common.config import get_settings
from services.common.events import Principal
from services.console.session import COOKIE
from tests.integration.console.conftest import SME, STEWARD, VIEWER, csrf_of, post_form
from tests.support.keys import key_for

pytestmark = pytest.mark.integration


def test_pages_need_a_login_and_a_bad_key_is_refused(browser):
    anonymous = browser(None)
    response = anonymous.get("/review?status=pending")
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=/review%3Fstatus%3Dpending"
    page = anonymous.get("/login")
    refused = anonymous.post("/login", data={"credential": "cllm_nope", "csrf": csrf_of(page.text)})
    assert refused.status_code == 401 and "not valid" in refused.text


def test_the_session_cookie_is_signed_httponly_and_same_site_strict(browser, console_app):
    client = browser(None)
    token = csrf_of(client.get("/login").text)
    response = client.post("/login", data={"credential": key_for(VIEWER), "csrf": token,
                                            "next": "https://evil.example/"})
    assert response.status_code == 303 and response.headers["location"] == "/catalog"
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert key_for(VIEWER) not in cookie  # only the key's digest, signed
    assert client.get("/catalog").status_code == 200
    value = client.cookies[COOKIE]
    replayed, tampered = browser(None), browser(None)
    replayed.cookies.set(COOKIE, value)
    middle = next(i for i in range(len(value) // 2, len(value)) if value[i].isalnum())
    flipped = "A" if value[middle] != "A" else "B"
    tampered.cookies.set(COOKIE, value[:middle] + flipped + value[middle + 1:])
    assert replayed.get("/catalog").status_code == 200
    assert tampered.get("/catalog").status_code == 303  # a tampered cookie is no session


def test_a_post_without_the_sessions_csrf_token_is_refused(browser):
    client = browser(STEWARD)
    no_token = client.post("/adapters/x/v1/retire", data={"reason": "no token"})
    wrong = client.post("/adapters/x/v1/retire", data={"reason": "x" * 5, "csrf": "forged"})
    assert no_token.status_code == wrong.status_code == 403
    assert "CSRF" in wrong.text
    # a login form posted from another site has no token either
    assert browser(None).post("/login", data={"credential": key_for(VIEWER)}).status_code == 403


def test_revoking_the_key_ends_the_session_on_the_next_request(browser):
    path = identity.key_file_path(get_settings())
    key = identity.add_key(path, "console-revoke-me", Principal(id="temp-console"))
    client = browser(None)
    token = csrf_of(client.get("/login").text)
    assert client.post("/login", data={"credential": key, "csrf": token}).status_code == 303
    assert client.get("/catalog").status_code == 200
    assert identity.revoke_key(path, "console-revoke-me")
    assert client.get("/catalog").status_code == 303


@pytest.mark.parametrize("principal, allowed, refused", [
    (VIEWER, ["/catalog", "/audits", "/evaluations", "/adapters"], ["/review", "/guardrails"]),
    (SME, ["/review"], ["/guardrails"]),
    (STEWARD, ["/review", "/guardrails", "/catalog"], []),
])
def test_each_role_sees_its_pages_and_is_refused_the_others(browser, principal, allowed,
                                                           refused):
    client = browser(principal)
    for page in allowed:
        assert client.get(page).status_code == 200, page
    for page in refused:
        response = client.get(page)
        assert response.status_code == 403 and "role" in response.text, page


def test_logging_out_ends_the_session(browser):
    client = browser(VIEWER)
    assert post_form(client, "/catalog", "/logout", {}).status_code == 303
    assert client.get("/catalog").status_code == 303


def test_the_console_runs_as_its_own_process_on_its_own_port(stack):
    """What `customllm up --console` starts: `python -m services.console`."""
    import socket

    import httpx

    from services.stack import services as worker_procs
    from tests.support.stack import wait_for

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    pid = worker_procs.start(stack.state, worker_procs.CONSOLE,
                             env={"CUSTOMLLM_CONSOLE_PORT": str(port)})
    try:
        def up() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(up, 60, what="the console process")
        login = httpx.get(f"http://127.0.0.1:{port}/catalog", follow_redirects=False)
        assert login.status_code == 303 and login.headers["location"].startswith("/login")
        assert worker_procs.running(stack.state)["console"] == pid
    finally:
        worker_procs.stop(stack.state, worker_procs.CONSOLE)
