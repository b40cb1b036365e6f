"""Signing in to the web console the way a browser does, without a browser: a TestClient keeps
the session cookie, and every form carries the CSRF token of the page it came from."""

from __future__ import annotations

import re

from fastapi import FastAPI
from fastapi.testclient import TestClient

from services.common.events import Principal
from tests.support.keys import key_for

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "no CSRF token on the page"
    return found.group(1)


def signed_in(app: FastAPI, principal: Principal, next_page: str | None = None) -> TestClient:
    """A client whose cookie jar holds a session of ``principal`` (signed in with its API key)."""
    client = TestClient(app, follow_redirects=False)
    form = {"credential": key_for(principal), "csrf": csrf_of(client.get("/login").text)}
    if next_page is not None:
        form["next"] = next_page
    response = client.post("/login", data=form)
    assert response.status_code == 303, response.text
    return client


def console_as(principal: Principal) -> TestClient:
    """A signed-in client of a console app built from the environment's settings."""
    from services.common.config import get_settings
    from services.console.app import create_app
    from services.console.config import ConsoleSettings

    return signed_in(create_app(get_settings(), ConsoleSettings()), principal)
